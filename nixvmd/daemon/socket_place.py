"""Where the control socket lives: a directory no other user can meddle with, one daemon per
socket (an flock beside it), and a stale socket of a dead daemon cleared away.

nixvmd makes the socket's directory (and any missing parents) 0700. A directory it did not
make keeps its mode whatever it is; nixvmd only checks that others cannot replace the
socket in it. It refuses a directory that belongs to another user (root's excepted) or that
others may write to, unless it is sticky like /tmp: there only an entry's owner may remove
or rename it, so the socket is safe once nixvmd made it, and the lock file is opened
without following symbolic links and must belong to nixvmd's user, as must a socket left
at the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from nixvmd.errors import NixvmdError

log = logging.getLogger(__name__)

PRIVATE = 0o700
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def prepare_directory(directory: Path) -> None:
    """Make `directory` and its missing parents 0700, or check an existing one is safe to use.

    NixvmdError, one sentence saying why and what to do, when it cannot be used.
    """
    missing: list[Path] = []
    existing = directory
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    # The nearest directory nixvmd did not make decides who could swap the ones it makes.
    check_directory(existing)
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE)
        except FileExistsError:
            check_directory(path)  # someone else made it meanwhile: judged like any other
            continue
        except OSError as exc:
            raise NixvmdError(
                f"cannot create the socket directory {path}: {exc.strerror}; "
                "set daemon.socket to a path in a directory you own"
            ) from None
        os.chmod(path, PRIVATE)  # exactly 0700, whatever the umask


def check_directory(path: Path) -> None:
    """NixvmdError when `path` is no directory, or others could replace entries in it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NixvmdError(f"cannot use the socket directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NixvmdError(f"{path} is not a directory; set daemon.socket to a path in a directory")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (os.getuid(), 0):
        raise NixvmdError(
            f"the socket directory {path} belongs to uid {st.st_uid}, who could replace nixvmd's "
            "socket in it; set daemon.socket to a path in a directory you own "
            "(the default is under $XDG_RUNTIME_DIR)"
        )
    if mode & WRITABLE_BY_OTHERS and not mode & stat.S_ISVTX:
        raise NixvmdError(
            f"the socket directory {path} is writable by other users (mode {mode:04o}) and not "
            f"sticky, so they could replace nixvmd's socket; make it private (chmod go-w {path}) "
            "or set daemon.socket to a path in a private directory"
        )


class SocketLock:
    """One daemon per socket: an flock next to it; a stale socket from a dead daemon is removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd = -1

    def acquire(self) -> None:
        """Prepare the directory, take the lock, clear a stale socket; NixvmdError saying why not."""
        prepare_directory(self.path.parent)
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError):
                holder = self.lock_path.read_text().strip()
            raise NixvmdError(
                f"another nixvmd{f' (pid {holder})' if holder else ''} already serves {self.path}; "
                "stop it first (nixvmctl stop, systemctl --user stop nixvmd) or use another daemon.socket"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        try:
            self._clear_stale_socket()
        except NixvmdError:
            self.release()
            raise

    def _open_lock(self) -> int:
        try:
            fd = os.open(
                self.lock_path,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                stat.S_IRUSR | stat.S_IWUSR,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NixvmdError(
                    f"{self.lock_path} is a symbolic link, which nixvmd does not follow for its lock; "
                    "remove it or set another daemon.socket"
                ) from None
            raise NixvmdError(
                f"cannot open the lock file {self.lock_path}: {exc.strerror}; "
                "set daemon.socket to a path in a directory you own"
            ) from None
        st = os.fstat(fd)
        problem = ""
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.getuid():
            problem = f"belongs to uid {st.st_uid}"
        if problem:
            os.close(fd)
            raise NixvmdError(f"{self.lock_path} {problem}; remove it or set another daemon.socket")
        return fd

    def _clear_stale_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if st.st_uid != os.getuid():
            raise NixvmdError(
                f"{self.path} exists and belongs to uid {st.st_uid}; remove it or set another daemon.socket"
            )
        if not (stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise NixvmdError(
                f"{self.path} exists and is not a socket; remove it or set another daemon.socket"
            )
        log.info("removing stale socket %s left by a daemon that is gone", self.path)
        self.path.unlink()

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(self._fd)
            self._fd = -1
