"""The guest's sparse disk images: made once, kept, remade at a new size; no room says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.config.schema import DiskConfig
from nixvmd.errors import StateSpaceError
from nixvmd.image.disks import prepare_disks
from tests.conftest import Tmpfs


def test_images_are_sparse_kept_between_runs_and_remade_at_a_new_size(tmp_path: Path) -> None:
    (disk,) = prepare_disks([DiskConfig("scratch", 64 << 20, "s1")], tmp_path)
    assert disk.path == tmp_path / "scratch.img" and disk.serial == "s1"
    assert disk.path.stat().st_size == 64 << 20 and disk.path.stat().st_blocks == 0
    with disk.path.open("r+b") as f:
        f.write(b"MARK")
    prepare_disks([DiskConfig("scratch", 64 << 20, "s1")], tmp_path)
    assert disk.path.read_bytes()[:4] == b"MARK"
    prepare_disks([DiskConfig("scratch", 32 << 20, "s1")], tmp_path)
    assert disk.path.stat().st_size == 32 << 20 and disk.path.read_bytes()[:4] == bytes(4)
    assert [p.name for p in tmp_path.iterdir()] == ["scratch.img"]


def test_no_inode_for_an_image_says_so_and_leaves_no_temp_file(
    small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20, inodes=3)
    disks = [DiskConfig("a", 1 << 30, "sa"), DiskConfig("b", 1 << 30, "sb")]
    with pytest.raises(StateSpaceError) as caught:
        prepare_disks(disks, fs.path / "disks")
    assert str(caught.value).startswith(f"no space left on {fs.path} (tmpfs): creating the disk image ")
    assert [p.name for p in (fs.path / "disks").iterdir()] == ["a.img"]
