"""nixvmctl export --format iso|qcow2|raw: real nix-build of export.nix against the fixture <nixpkgs/nixos>.

The fixture provides nixpkgs' image attributes under their real names (iso-image.nix's
system.build.isoImage, lib/make-disk-image.nix), each building a small file as the image.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nixvmd.image.export import ImageFormat, export_command, export_expression
from nixvmd.image.nix import NixImageSpec
from tests.image.conftest import KernelUnderTest, NixCallLog, force_fresh_build

CTL = [sys.executable, "-m", "nixvmd.ctl.main"]


def _config(tmp_path: Path, kernel: Path, backend: str = "nix") -> Path:
    config = tmp_path / "nixvmd.toml"
    config.write_text(
        f'[kernel]\ntree = "{tmp_path}"\nimage = "{kernel}"\n'
        f'[image]\nbackend = "{backend}"\nnix_file = "vm/vm.nix"\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nsocket = "{tmp_path / "ctl.sock"}"\n'
    )
    return config


def _export(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, "--config", str(config), "export", *args], capture_output=True, text=True, timeout=300
    )


def test_the_command_names_the_format_the_kernel_and_the_out_link(tmp_path: Path) -> None:
    spec = NixImageSpec(nix_file=tmp_path / "vm.nix")
    argv = export_command(spec, ImageFormat.QCOW2, tmp_path / "bzImage", tmp_path / "out")
    assert argv == [
        "nix-build",
        str(export_expression()),
        "--arg",
        "configuration",
        str(tmp_path / "vm.nix"),
        "--argstr",
        "format",
        "qcow2",
        "--arg",
        "kernel",
        str(tmp_path / "bzImage"),
        "--out-link",
        str(tmp_path / "out" / "nixvmd-qcow2"),
    ]
    assert "kernel" not in export_command(spec, ImageFormat.ISO, None, tmp_path)
    assert export_expression().is_file()


def test_each_format_is_built_with_the_current_kernel_and_linked_into_the_output_dir(
    fixture_nix_path: str,
    vm_dir: Path,
    kernel_under_test: KernelUnderTest,
    nix_calls: NixCallLog,
    tmp_path: Path,
) -> None:
    force_fresh_build(vm_dir)  # so Nix really builds and prints the builders' progress
    config = _config(tmp_path, kernel_under_test.path)
    out = tmp_path / "images"
    expected = {"iso": "iso/test-node-fixture.iso", "qcow2": "nixos.qcow2", "raw": "nixos.img"}
    for image_format, name in expected.items():
        done = _export(config, "--format", image_format, "-o", str(out))
        assert done.returncode == 0, done.stderr
        link = out / f"nixvmd-{image_format}"
        image = link.resolve() / name
        assert done.stdout.splitlines() == [
            f"built the {image_format} image with the kernel {kernel_under_test.path}: {image}",
            f"linked as {link} (a GC root: remove it to let Nix collect the image)",
        ]
        assert f"fixture: building a {image_format} image of test-node" in done.stderr  # Nix's progress
        assert nix_calls.calls()[-1] == [
            "nix-build",
            str(export_expression()),
            "--arg",
            "configuration",
            str(vm_dir / "vm.nix"),
            "--argstr",
            "format",
            image_format,
            "--arg",
            "kernel",
            str(kernel_under_test.path),
            "--out-link",
            str(link),
        ]
    iso = (out / "nixvmd-iso" / expected["iso"]).read_text()
    carried = iso.splitlines()[-1].split()
    assert carried[0] == "/boot/nixvmd/bzImage"
    assert Path(carried[1]).read_bytes() == kernel_under_test.path.read_bytes()
    raw = (out / "nixvmd-raw" / "nixos.img").read_text()
    assert 'menuentry "NixOS with the kernel under test (nixvmd)"' in raw
    assert "linux /boot/nixvmd/bzImage init=/nonexistent/fixture-toplevel-test-node/init" in raw
    assert (out / "nixvmd-qcow2" / "nixos.qcow2").read_bytes()[:4] == b"QFI\xfb"


def test_a_failed_image_build_says_so_with_nixs_error(
    fixture_nix_path: str, vm_dir: Path, kernel_under_test: KernelUnderTest, tmp_path: Path
) -> None:
    (vm_dir / "extra.nix").write_text(
        "{ fixture.buildHook = \"echo 'no room for the image' >&2; exit 3\"; }\n"
    )
    done = _export(_config(tmp_path, kernel_under_test.path), "--format", "raw")
    assert done.returncode == 2
    progress, said = done.stderr.split(
        "nixvmctl: nix-build could not build the raw image (exit status 100):\n"
    )
    assert "fixture: building a raw image of test-node" in progress
    assert said.startswith("error: builder for ") and "> no room for the image" in said
    assert not (tmp_path / "state" / "export" / "nixvmd-raw").exists()


def test_the_direct_backend_is_refused_in_one_sentence(
    kernel_under_test: KernelUnderTest, tmp_path: Path
) -> None:
    done = _export(_config(tmp_path, kernel_under_test.path, backend="direct"), "--format", "iso")
    assert done.returncode == 2
    assert done.stderr == (
        'nixvmctl: export --format builds a NixOS image from image.nix_file; image.backend is "direct", '
        'whose guest is no NixOS configuration: set image.backend = "nix" (nixvmctl init --nix writes a '
        "vm.nix)\n"
    )


@pytest.mark.parametrize("args", [["--format", "vmdk"], ["--format", "iso", "--jobset", "x"]])
def test_export_wants_one_known_form(args: list[str], tmp_path: Path) -> None:
    done = subprocess.run([*CTL, "export", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
