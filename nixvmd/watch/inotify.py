"""Linux inotify on the asyncio loop: directory watches, filtered by name, no threads, no polling.

watchdog's observer wakes every second to poll its queue and pyinotify no longer imports on
Python 3.12, so nixvmd reads the inotify descriptor itself from the event loop (three libc
calls through ctypes). Parent directories are watched, never the files, so an atomic
replace (rename over the file) keeps being seen.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
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
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# Files count as changed when a writer closes them or something is renamed onto them;
# IN_MODIFY is left out on purpose: it fires for every write() of a half-written bzImage.
_DIR_MASK = (
    IN_CLOSE_WRITE
    | IN_MOVED_TO
    | IN_MOVED_FROM
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")


class ChangeKind(enum.StrEnum):
    WRITTEN = "written"  # closed after writing, or a new file created and closed
    REPLACED = "replaced"  # renamed onto the watched name
    CREATED = "created"  # created (directories; files are reported when closed)
    REMOVED = "removed"


@dataclass(frozen=True)
class FileChange:
    """One change of a file under a watched directory."""

    path: Path
    kind: ChangeKind
    is_dir: bool = False


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


class DirectoryWatch:
    """inotify watches on directories, delivering FileChange to a callback on the event loop.

    Use as a context manager inside a running loop; `add(dir)` watches one directory
    (non-recursively), `add_tree(dir)` a whole tree, following new subdirectories.
    """

    def __init__(self, on_change: Callable[[FileChange], None]) -> None:
        self._on_change = on_change
        self._fd = -1
        self._dirs: dict[int, Path] = {}
        self._watch_of: dict[Path, int] = {}
        self._trees: set[Path] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.overflowed = 0

    def __enter__(self) -> DirectoryWatch:
        fd = _lib().init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._dirs.clear()
        self._watch_of.clear()

    @property
    def directories(self) -> list[Path]:
        return sorted(self._watch_of)

    def add(self, directory: Path) -> bool:
        """Watch one directory; False (no error) when it does not exist."""
        directory = Path(os.path.abspath(directory))
        if directory in self._watch_of:
            return True
        wd = _lib().add_watch(self._fd, os.fsencode(directory), _DIR_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self._dirs[wd] = directory
        self._watch_of[directory] = wd
        return True

    def add_tree(self, root: Path) -> bool:
        """Watch `root` and every directory below it (skipping .git), following new ones."""
        root = Path(os.path.abspath(root))
        self._trees.add(root)
        if not self.add(root):
            return False
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in dirnames:
                self.add(Path(dirpath) / name)
        return True

    def remove(self, directory: Path) -> None:
        wd = self._watch_of.pop(Path(os.path.abspath(directory)), None)
        if wd is not None:
            self._dirs.pop(wd, None)
            _lib().rm_watch(self._fd, wd)

    def _in_tree(self, path: Path) -> bool:
        return any(path == t or t in path.parents for t in self._trees)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name_bytes = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            self._dispatch(wd, mask, os.fsdecode(name_bytes.rstrip(b"\0")))

    def _dispatch(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self.overflowed += 1
            return
        directory = self._dirs.get(wd)
        if directory is None:
            return
        if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                self._watch_of.pop(directory, None)
            return
        path = directory / name
        is_dir = bool(mask & IN_ISDIR)
        if is_dir and mask & (IN_CREATE | IN_MOVED_TO) and self._in_tree(path):
            self.add_tree(path)
        if mask & IN_CLOSE_WRITE:
            kind = ChangeKind.WRITTEN
        elif mask & IN_MOVED_TO:
            kind = ChangeKind.REPLACED
        elif mask & (IN_DELETE | IN_MOVED_FROM):
            kind = ChangeKind.REMOVED
        elif mask & IN_CREATE and is_dir:
            kind = ChangeKind.CREATED
        else:
            return
        self._on_change(FileChange(path, kind, is_dir))


class FileWrites:
    """inotify IN_MODIFY on one file: `on_write()` runs on the loop after data was written to it.

    For following a file another process appends to (QEMU's console output): events
    the kernel has not handed over yet are coalesced, so a burst of writes costs one
    wake-up, and the callback reads whatever is new.
    """

    def __init__(self, path: Path, on_write: Callable[[], None]) -> None:
        self.path = path
        self._on_write = on_write
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> FileWrites:
        fd = _lib().init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        if _lib().add_watch(fd, os.fsencode(self.path), IN_MODIFY) < 0:
            err = ctypes.get_errno()
            self.close()
            raise OSError(err, f"inotify_add_watch {self.path}: {os.strerror(err)}")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> None:
        try:
            os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        self._on_write()
