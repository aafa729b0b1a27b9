"""newc archives as the real cpio(1) and the kernel read them."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from nixvmd.image.cpio import Entry, write_cpio


@pytest.fixture(scope="module")
def cpio_tool() -> str:
    """GNU cpio, the independent reader the archives are checked with."""
    tool = shutil.which("cpio")
    if tool is None:
        pytest.fail("cpio is not installed: apt-get install -y cpio")
    return tool


@pytest.fixture
def sample_entries() -> list[Entry]:
    """A small tree: nested directories, files of awkward sizes and modes, symlinks."""
    return [
        Entry.directory("bin"),
        Entry.file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        Entry.symlink("bin/sh", "tool"),
        Entry.directory("etc", 0o750),
        Entry.file("etc/secret", b"x", 0o600),
        Entry.file("etc/empty", b""),
        Entry.directory("a"),
        Entry.directory("a/b"),
        Entry.directory("a/b/c"),
        Entry.file("a/b/c/three", b"\0\1\2"),
        Entry.file("a/b/c/five", b"12345"),
        Entry.symlink("a/abs", "/etc/secret"),
        Entry.file("init", b"#!/bin/sh\nexec /bin/sh\n", 0o755),
    ]


def extract(cpio_tool: str, archive: bytes, dest: Path) -> None:
    """Unpack `archive` into `dest` with `cpio -idm`."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [cpio_tool, "-idm", "--quiet", "--no-absolute-filenames"],
        input=archive,
        cwd=dest,
        check=True,
        capture_output=True,
    )


def listing(cpio_tool: str, archive: bytes) -> list[str]:
    """The member names `cpio -t` reads from `archive`, in order."""
    result = subprocess.run([cpio_tool, "-t", "--quiet"], input=archive, check=True, capture_output=True)
    return result.stdout.decode().splitlines()


def test_the_archive_extracts_to_the_same_tree(
    cpio_tool: str, sample_entries: list[Entry], tmp_path: Path
) -> None:
    extract(cpio_tool, write_cpio(sample_entries), tmp_path)

    for entry in sample_entries:
        path = tmp_path / entry.path
        st = path.lstat()
        assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(entry.mode), entry.path
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(entry.mode), entry.path
        if stat.S_ISREG(entry.mode):
            assert path.read_bytes() == entry.data
        elif stat.S_ISLNK(entry.mode):
            assert os.readlink(path) == entry.data.decode()


def test_cpio_lists_the_entries_in_order(cpio_tool: str, sample_entries: list[Entry]) -> None:
    assert listing(cpio_tool, write_cpio(sample_entries)) == [e.path for e in sample_entries]


def test_symlinks_resolve_inside_the_tree(
    cpio_tool: str, sample_entries: list[Entry], tmp_path: Path
) -> None:
    extract(cpio_tool, write_cpio(sample_entries), tmp_path)

    assert (tmp_path / "bin/sh").read_bytes() == b"#!/bin/sh\necho tool\n"


def test_timestamps_are_zero(cpio_tool: str, sample_entries: list[Entry], tmp_path: Path) -> None:
    extract(cpio_tool, write_cpio(sample_entries), tmp_path)

    assert (tmp_path / "init").stat().st_mtime == 0
    assert (tmp_path / "etc/secret").stat().st_mtime == 0


def test_the_same_entries_give_the_same_bytes(sample_entries: list[Entry]) -> None:
    first = write_cpio(sample_entries)

    assert write_cpio(list(sample_entries)) == first
    assert write_cpio([*sample_entries[:-1], Entry.file("init", b"other", 0o755)]) != first


def test_the_archive_is_padded_for_concatenation(sample_entries: list[Entry]) -> None:
    for count in range(len(sample_entries) + 1):
        archive = write_cpio(sample_entries[:count])
        assert len(archive) % 512 == 0
        assert archive.startswith(b"070701") or count == 0


def test_leading_slashes_are_dropped(cpio_tool: str, tmp_path: Path) -> None:
    archive = write_cpio([Entry.directory("/etc"), Entry.file("/etc/motd", b"hi\n")])

    assert listing(cpio_tool, archive) == ["etc", "etc/motd"]
    extract(cpio_tool, archive, tmp_path)
    assert (tmp_path / "etc/motd").read_bytes() == b"hi\n"


def test_a_large_binary_file_survives(cpio_tool: str, tmp_path: Path) -> None:
    data = b"".join(hashlib.sha256(n.to_bytes(4, "little")).digest() for n in range(40000)) + b"\0\0\0"

    extract(cpio_tool, write_cpio([Entry.file("blob", data)]), tmp_path)

    assert (tmp_path / "blob").read_bytes() == data


def test_an_empty_archive_is_valid(cpio_tool: str) -> None:
    assert listing(cpio_tool, write_cpio([])) == []
