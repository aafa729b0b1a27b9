"""VM socket directories: private, locked while used, removed when their daemon is gone."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixvmd.vm.machine import release_socket_dir, remove_stale_socket_dirs, socket_dir


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short XDG_RUNTIME_DIR, so other tests' and daemons' directories are not touched."""
    base = Path(tempfile.mkdtemp(prefix="nvs-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base
    shutil.rmtree(base)


def test_a_socket_dir_is_private_and_released_completely(runtime_dir: Path) -> None:
    path = socket_dir()
    assert path.parent == runtime_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert remove_stale_socket_dirs() == []  # ours, in use
    release_socket_dir(path)
    assert not path.exists()
    release_socket_dir(path)  # again: nothing happens


def test_the_dir_of_a_killed_process_is_removed_and_a_live_ones_kept(runtime_dir: Path) -> None:
    code = "from nixvmd.vm.machine import socket_dir; print(socket_dir(), flush=True); input()"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    theirs = Path(child.stdout.readline().strip())
    assert theirs.parent == runtime_dir
    try:
        assert remove_stale_socket_dirs() == []  # alive: left alone
        assert theirs.is_dir()
    finally:
        child.kill()
        child.wait()
    assert remove_stale_socket_dirs() == [theirs]
    assert not theirs.exists()


def test_a_dir_without_an_owner_file_is_left_alone(runtime_dir: Path) -> None:
    # One being created right now, or made by something else that uses the prefix.
    other = runtime_dir / "nixvmd-vm-unknown"
    other.mkdir()
    assert remove_stale_socket_dirs() == []
    assert other.is_dir()
