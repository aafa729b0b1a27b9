"""The control socket's directory and lock on a real file system: what nixvmd makes is 0700,
what it did not make keeps its mode, and a place others could meddle with is refused."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixvmd.daemon.socket_place import SocketLock, prepare_directory
from nixvmd.errors import NixvmdError

root_only = pytest.mark.skipif(os.getuid() != 0, reason="files of another uid need root to make")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def lock() -> Iterator[list[SocketLock]]:
    """Locks taken by a test, released at its end."""
    taken: list[SocketLock] = []
    yield taken
    for held in taken:
        held.release()


def _acquire(path: Path, taken: list[SocketLock]) -> SocketLock:
    held = SocketLock(path)
    held.acquire()
    taken.append(held)
    return held


def test_missing_directories_are_made_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        prepare_directory(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for made in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert _mode(made) == 0o700, made


@pytest.mark.parametrize("mode", [0o700, 0o755, 0o750, 0o1777, 0o1770], ids=oct)
def test_an_existing_safe_directory_is_used_as_it_is(tmp_path: Path, mode: int) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, mode)
    prepare_directory(theirs)
    prepare_directory(theirs / "made-inside")
    assert _mode(theirs) == mode
    assert _mode(theirs / "made-inside") == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o770], ids=oct)
def test_a_directory_others_may_write_to_is_refused_and_left_alone(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    with pytest.raises(NixvmdError, match=f"writable by other users \\(mode {mode:04o}\\) and not sticky"):
        prepare_directory(shared)
    # Nor may nixvmd hang directories of its own under it: they could be swapped.
    with pytest.raises(NixvmdError, match="writable by other users"):
        prepare_directory(shared / "mine" / "deeper")
    assert _mode(shared) == mode
    assert list(shared.iterdir()) == []


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NixvmdError, match="is not a directory"):
        prepare_directory(tmp_path / "file")


@root_only
def test_a_sticky_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, 0o1777)
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(NixvmdError, match=f"belongs to uid {nobody.pw_uid}"):
        prepare_directory(theirs)
    assert _mode(theirs) == 0o1777


def test_the_lock_in_a_sticky_directory_is_ours_and_the_mode_unchanged(
    tmp_path: Path, lock: list[SocketLock]
) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    held = _acquire(sticky / "ctl.sock", lock)
    st = held.lock_path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o600
    assert _mode(sticky) == 0o1777


def test_a_symlink_in_place_of_the_lock_is_not_followed(tmp_path: Path, lock: list[SocketLock]) -> None:
    target = tmp_path / "target"
    target.write_text("precious\n")
    (tmp_path / "ctl.sock.lock").symlink_to(target)
    with pytest.raises(NixvmdError, match="is a symbolic link"):
        _acquire(tmp_path / "ctl.sock", lock)
    assert target.read_text() == "precious\n"


@root_only
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path, lock: list[SocketLock]) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp_path, 0o1777)
    planted = tmp_path / "ctl.sock.lock"
    planted.write_text("")
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(NixvmdError, match=f"belongs to uid {nobody.pw_uid}"):
        _acquire(tmp_path / "ctl.sock", lock)


@root_only
def test_a_socket_of_another_user_at_the_path_is_refused_and_kept(
    short_tmp: Path, lock: list[SocketLock]
) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(short_tmp, 0o1777)
    path = short_tmp / "ctl.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as planted:
        planted.bind(str(path))
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(NixvmdError, match=f"{path} exists and belongs to uid {nobody.pw_uid}"):
        _acquire(path, lock)
    assert path.exists()
    assert not path.with_name("ctl.sock.lock").exists(), "a refused start left its lock file"


def test_a_stale_socket_of_ours_is_removed_but_a_plain_file_is_not(
    short_tmp: Path, lock: list[SocketLock]
) -> None:
    path = short_tmp / "ctl.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    held = _acquire(path, lock)
    assert not path.exists()
    held.release()

    path.write_text("my notes\n")
    with pytest.raises(NixvmdError, match="exists and is not a socket"):
        _acquire(path, lock)
    assert path.read_text() == "my notes\n"
