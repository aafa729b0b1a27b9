"""`nixvmctl export --format iso|qcow2|raw [-o DIR]`: vm.nix as a bootable image (nixvmd.image.export)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from nixvmd.config.load import find_config_file, load_config
from nixvmd.config.schema import Backend
from nixvmd.errors import KernelImageError, NixvmdError
from nixvmd.image.export import ImageFormat, export_image
from nixvmd.image.nix_backend import image_spec
from nixvmd.watch.kernel_image import read_kernel_image

DEFAULT_DIR = "export"  # under daemon.state_dir when -o is not given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """export's options: --jobset DIR, or --format FORMAT with -o DIR."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--jobset", type=Path, metavar="DIR", help="DIR/default.nix: one derivation per shard")
    what.add_argument(
        "--format",
        choices=[f.value for f in ImageFormat],
        help="vm.nix as a bootable image (nix backend), with the current kernel",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="--format: where the image's link goes (default: state_dir/export)",
    )


def export_format(config_path: Path | None, image_format: ImageFormat, output: Path | None) -> int:
    """Build the image, Nix's output on stderr as it comes; the image's path on stdout."""
    path = config_path or find_config_file()
    config = load_config(path)
    if config.image.backend != Backend.NIX:
        raise NixvmdError(
            "export --format builds a NixOS image from image.nix_file; image.backend is "
            f'"{config.image.backend}", whose guest is no NixOS configuration: set image.backend = "nix" '
            "(nixvmctl init --nix writes a vm.nix)"
        )
    kernel: Path | None = config.kernel_image
    try:
        read_kernel_image(config.kernel_image)
    except KernelImageError as exc:
        print(f"nixvmctl: warning: {exc}; the image carries no kernel under test", file=sys.stderr)
        kernel = None
    directory = output or config.daemon.state_dir / DEFAULT_DIR

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    spec = image_spec(config, path)
    image = asyncio.run(export_image(spec, image_format, kernel, directory, progress))
    carried = f" with the kernel {kernel}" if kernel is not None else ""
    print(f"built the {image_format.value} image{carried}: {image.file}")
    print(f"linked as {image.link} (a GC root: remove it to let Nix collect the image)")
    return 0
