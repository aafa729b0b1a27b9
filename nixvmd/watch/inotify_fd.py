"""The inotify descriptor on the asyncio loop: raw events through three libc calls (ctypes).

watchdog's observer wakes every second to poll its queue and pyinotify no longer imports on
Python 3.12, so nixvmd reads the descriptor itself when the loop says it is readable: no
thread, no polling. What the events mean is `DirectoryWatch`'s business (inotify.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_ONLYDIR = 0x01000000
IN_MASK_ADD = 0x20000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_EVENT = struct.Struct("iIII")


@dataclass(frozen=True)
class RawEvent:
    """One inotify event: the watch it came from, its mask, the entry's name ("" for self)."""

    wd: int
    mask: int
    name: str


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


_libc: _Libc | None = None


def _lib() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


class InotifyFd:
    """One inotify instance whose events reach `on_events` in batches, on the running loop."""

    def __init__(self, on_events: Callable[[list[RawEvent]], None]) -> None:
        self._on_events = on_events
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open(self) -> None:
        """Create the descriptor and start reading it on the running loop."""
        fd = _lib().init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def add(self, path: Path, mask: int) -> int | None:
        """Watch `path` (symlinks followed) for `mask`; its watch descriptor, None when it is missing.

        A missing path or one that is not a directory (with IN_ONLYDIR) gives None; anything
        else (no permission, the user's watch limit) raises OSError naming the path.
        """
        wd: int = _lib().add_watch(self._fd, os.fsencode(path), mask)
        if wd >= 0:
            return wd
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")

    def remove(self, wd: int) -> None:
        """Stop a watch; one the kernel already dropped (its directory deleted) is no error."""
        if self._fd >= 0:
            _lib().rm_watch(self._fd, wd)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        events = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            events.append(RawEvent(wd, mask, os.fsdecode(name.rstrip(b"\0"))))
        self._on_events(events)


class FileWrites:
    """inotify IN_MODIFY on one file: `on_write()` runs on the loop after data was written to it.

    For following a file another process appends to (QEMU's console output): the events
    of one read are coalesced, so a burst of writes costs one wake-up, and the callback
    reads whatever is new.
    """

    def __init__(self, path: Path, on_write: Callable[[], None]) -> None:
        self.path = path
        self._on_write = on_write
        self._inotify = InotifyFd(lambda events: self._on_write())

    def __enter__(self) -> FileWrites:
        self._inotify.open()
        try:
            if self._inotify.add(self.path, IN_MODIFY) is None:
                raise FileNotFoundError(f"inotify_add_watch {self.path}: no such file")
        except BaseException:
            self._inotify.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._inotify.close()
