"""A bootable image of the configured vm.nix to take elsewhere: `nixvmctl export --format iso|qcow2|raw`.

nix-build runs export.nix (beside this file), which extends the user's configuration with
nixpkgs' own image builders — iso: nixos/modules/installer/cd-dvd/iso-image.nix's
`system.build.isoImage`; qcow2 and raw: nixos/lib/make-disk-image.nix as `system.build.image`
— and carries the current kernel (disk images: with a GRUB entry that boots it). The build
streams like an image build, fails with Nix's trimmed error, and leaves its out-link (a GC
root) in the chosen directory; the image file inside the output is the result.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import NixImageSpec, nix_expression_for_path, run_nix, trim_nix_error


class ImageFormat(enum.StrEnum):
    """What `export --format` builds, and where nixpkgs' builder puts the file in its output."""

    ISO = "iso"
    QCOW2 = "qcow2"
    RAW = "raw"

    @property
    def file_pattern(self) -> str:
        """The image file inside the build output (nixpkgs' layout)."""
        return {"iso": "iso/*.iso", "qcow2": "nixos.qcow2", "raw": "nixos.img"}[self.value]


@dataclass(frozen=True)
class ExportedImage:
    """A built image: the file, and the out-link that keeps it from Nix's garbage collector."""

    file: Path
    link: Path


def export_expression() -> Path:
    """export.nix, the expression nix-build evaluates."""
    return Path(str(resources.files("nixvmd.image").joinpath("export.nix")))


def out_link(directory: Path, image_format: ImageFormat) -> Path:
    """Where the build's out-link goes in `directory`."""
    return directory / f"nixvmd-{image_format.value}"


def export_command(
    spec: NixImageSpec, image_format: ImageFormat, kernel: Path | None, directory: Path
) -> list[str]:
    """The nix-build command building `spec`'s configuration as `image_format`, out-link in `directory`."""
    kernel_arg = ["--arg", "kernel", nix_expression_for_path(kernel.absolute())] if kernel else []
    return [
        "nix-build",
        str(export_expression()),
        "--arg",
        "configuration",
        nix_expression_for_path(spec.configuration()),
        "--argstr",
        "format",
        image_format.value,
        *kernel_arg,
        "--out-link",
        str(out_link(directory, image_format).absolute()),
        *spec.nix_args,
    ]


async def export_image(
    spec: NixImageSpec,
    image_format: ImageFormat,
    kernel: Path | None,
    directory: Path,
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
) -> ExportedImage:
    """Build the image, Nix's output line by line to `on_line`; ImageBuildError says why it failed."""
    _check_and_make_room(spec, directory)
    argv = export_command(spec, image_format, kernel, directory)
    status, lines = await run_nix(argv, spec.cwd(), env, on_line)
    output = "\n".join(lines)
    if status != 0:
        raise ImageBuildError(
            f"nix-build could not build the {image_format.value} image (exit status {status}):\n"
            + trim_nix_error(output),
            output,
        )
    link = out_link(directory, image_format)
    files = sorted(link.resolve().glob(image_format.file_pattern))
    if len(files) != 1:
        raise ImageBuildError(
            f"the build output {link.resolve()} should hold one {image_format.file_pattern}, "
            f"found {len(files)}: is <nixpkgs> a nixpkgs whose image builders export.nix knows?"
        )
    return ExportedImage(files[0], link)


def _check_and_make_room(spec: NixImageSpec, directory: Path) -> None:
    if spec.is_flake:
        raise ImageBuildError(
            "nixvmctl export builds image.nix_file, not a flake: build your flake's "
            "nixosConfigurations.<name>.config.system.build.images.<variant> with nix build instead"
        )
    if not spec.configuration().exists():
        raise ImageBuildError(
            f"the NixOS configuration {spec.configuration()} does not exist: fix image.nix_file"
        )
    directory.mkdir(parents=True, exist_ok=True)
