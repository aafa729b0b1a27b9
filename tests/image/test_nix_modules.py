"""kernel.modules for the nix backend: copied into the run's shared dir with a modules.list."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import NixImage
from nixvmd.image.nix_launch import prepare_nix, share_modules
from nixvmd.vm.cmdline import Accelerator, MachineSpec, Sockets

IMAGE = NixImage(
    Path("/nix/store/x-nixos-vm"), Path("/nix/store/x-nixos-vm/bin/run-test-node-vm"), "test-node"
)


def _spec(tmp_path: Path) -> MachineSpec:
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    return MachineSpec(Accelerator.TCG, 512 << 20, 1, sockets, tmp_path / "console.log", (), ())


def _kos(tree: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        ko = tree / name
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(f"ELF {name}".encode())
        paths.append(ko)
    return paths


def test_the_runs_shared_dir_holds_the_modules_and_their_order(tmp_path: Path) -> None:
    modules = _kos(tmp_path / "linux", "fs/xfs/xfs.ko", "lib/libcrc32c.ko", "drivers/md/xfs.ko")
    run_dir = tmp_path / "run"
    launch = prepare_nix(
        IMAGE, tmp_path / "bzImage", "", _spec(tmp_path), run_dir, tmp_path / "state", {}, modules=modules
    )
    shared = Path(dict(launch.env or ())["SHARED_DIR"])
    assert shared == run_dir / "shared"
    listed = (shared / "modules.list").read_text().splitlines()
    # In the given order; two modules with one name stay apart; names relative to the list.
    assert listed == ["modules/00-xfs.ko", "modules/01-libcrc32c.ko", "modules/02-xfs.ko"]
    for name, ko in zip(listed, modules, strict=True):
        copy = shared / name
        assert copy.read_bytes() == ko.read_bytes()
        assert not copy.is_symlink()  # a host path means nothing in the guest


def test_no_modules_no_list(tmp_path: Path) -> None:
    launch = prepare_nix(
        IMAGE, tmp_path / "bzImage", "", _spec(tmp_path), tmp_path / "run", tmp_path / "s", {}
    )
    shared = Path(dict(launch.env or ())["SHARED_DIR"])
    assert shared.is_dir()
    assert list(shared.iterdir()) == []


def test_a_module_that_is_not_built_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "linux" / "fs" / "xfs" / "xfs.ko"
    with pytest.raises(ImageBuildError, match=r"kernel\.modules entry .*xfs\.ko.*make modules"):
        share_modules([missing], tmp_path / "shared")
