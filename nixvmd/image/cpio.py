"""Writing cpio "newc" archives, the format the kernel unpacks as an initramfs."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, regular file or symlink (target in `data`)."""

    path: str
    mode: int
    data: bytes = b""

    @classmethod
    def directory(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644) -> Entry:
        return cls(path, stat.S_IFREG | perm, data)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, stat.S_IFLNK | 0o777, target.encode())


def _header(ino: int, entry: Entry | None, name: str) -> bytes:
    mode = entry.mode if entry else 0
    size = len(entry.data) if entry else 0
    nlink = 2 if entry and stat.S_ISDIR(entry.mode) else 1
    fields = [ino, mode, 0, 0, nlink if entry else 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def write_cpio(entries: Iterable[Entry]) -> bytes:
    """A newc archive of `entries` (parents must come before children), with its trailer.

    Timestamps and owners are zero so the same entries always give the same bytes.
    """
    out = bytearray()
    for ino, entry in enumerate(entries, start=1):
        name = entry.path.lstrip("/") or "."
        head = _header(ino, entry, name)
        out += head + _pad(len(head))
        out += entry.data + _pad(len(entry.data))
    trailer = _header(0, None, _TRAILER)
    out += trailer + _pad(len(trailer))
    out += _pad(len(out)) if len(out) % 512 == 0 else b"\0" * (-len(out) % 512)
    return bytes(out)
