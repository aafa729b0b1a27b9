"""Writes into a full file system (a real small tmpfs): one sentence naming path and space, no partial."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.errors import NixvmdError, StateSpaceError
from nixvmd.results.space import file_system, free_bytes, make_dirs, room_for, write_atomic
from tests.conftest import Tmpfs

Mount = Callable[..., Tmpfs]


def test_a_write_that_does_not_fit_names_the_file_system_the_path_and_the_space(
    small_tmpfs: Mount, tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    target = fs.path / "run.json"
    target.write_text("old\n")
    with pytest.raises(StateSpaceError) as caught:
        write_atomic(target, bytes(2 << 20), "writing the run record")
    error = caught.value
    assert isinstance(error, NixvmdError)
    text = str(error)
    assert text.startswith(f"no space left on {fs.path} (tmpfs): writing the run record {target} ")
    assert " needs 2.0 MiB, " in text
    assert text.endswith(" free; free some space or move daemon.state_dir")
    assert "\n" not in text and "Errno" not in text
    # The partial temp file is gone, so the free space named is what the disk really has.
    assert sorted(p.name for p in fs.path.iterdir()) == ["run.json"]
    assert target.read_text() == "old\n"
    assert error.path == target and error.needed == 2 << 20
    assert error.free == free_bytes(fs.path) and error.free > (900 << 10)


def test_a_write_that_fits_replaces_the_file_whole(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    target = fs.path / "junit.xml"
    write_atomic(target, "<testsuite/>\n", "writing the run's JUnit report")
    assert target.read_text() == "<testsuite/>\n"
    assert [p.name for p in fs.path.iterdir()] == ["junit.xml"]


def test_the_free_space_is_what_is_left_after_a_filler(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 4 << 20)
    fs.fill(leave=12 << 10)
    with pytest.raises(StateSpaceError, match=r"needs 64 KiB, 12 KiB free;"):
        write_atomic(fs.path / "x", bytes(64 << 10), "writing")
    fs.empty()
    write_atomic(fs.path / "x", bytes(64 << 10), "writing")
    assert (fs.path / "x").stat().st_size == 64 << 10


def test_room_for_removes_the_partial_file_whatever_the_failure(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    partial = fs.path / "initrd.cpio"
    with (
        pytest.raises(StateSpaceError, match=r"writing the run's initrd .*initrd\.cpio failed with"),
        room_for(partial, "writing the run's initrd", partial=partial),
        partial.open("wb") as f,
    ):
        f.write(bytes(3 << 20))
    assert not partial.exists()
    # Not a space problem: the error is left as it was, and the partial file still goes.
    with pytest.raises(PermissionError), room_for(partial, "writing", partial=partial):
        partial.write_bytes(b"half")
        raise PermissionError(errno.EACCES, "denied")
    assert not partial.exists()


def test_an_exhausted_quota_says_so(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    with pytest.raises(StateSpaceError) as caught, room_for(fs.path / "x", "writing", 10):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert str(caught.value).startswith(f"disk quota exceeded on {fs.path} (tmpfs): writing ")


def test_no_inodes_left_for_a_directory_is_no_space_too(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20, inodes=3)
    with pytest.raises(StateSpaceError, match=r"creating the run store .*/runs/a/b failed with"):
        make_dirs(fs.path / "runs" / "a" / "b", "creating the run store")


def test_the_file_system_is_found_for_paths_not_made_yet_and_odd_mount_points(
    small_tmpfs: Mount, tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state dir", 1 << 20)
    assert file_system(fs.path / "runs" / "not" / "yet") == (str(fs.path), "tmpfs")
    assert file_system(fs.path) == (str(fs.path), "tmpfs")
