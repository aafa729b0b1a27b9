"""Writes into state_dir that find no room: one sentence naming the path and the free space, no partial file.

Every stage that writes under daemon.state_dir (kernel snapshots, initramfs, disks, run
records, suite results) goes through `room_for` or `write_atomic`, so a full file system
(ENOSPC) or an exhausted quota (EDQUOT) becomes a StateSpaceError the daemon can show,
never a traceback, and never a half-written temp file that keeps the disk full.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from nixvmd.config.units import format_size
from nixvmd.errors import StateSpaceError

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MOUNTINFO = Path("/proc/self/mountinfo")
ADVICE = "free some space or move daemon.state_dir"


def existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (what a file system question can be asked of)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes nixvmd can still write on the file system holding `path`.

    Root may write into the blocks ext4 keeps in reserve, so for root that is f_bfree;
    for anyone else f_bavail.
    """
    st = os.statvfs(existing(path))
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def file_system(path: Path) -> tuple[str, str]:
    """The mount point and type of the file system holding `path` ("?" when unknown)."""
    target = os.path.realpath(existing(path))
    best, kind = "?", "?"
    try:
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:
        return best, kind
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount = _unescape(fields[4])
        after = fields[fields.index("-") + 1 :]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        # A later mount on the same point hides the earlier one, so ties go to the later line.
        if inside and (best == "?" or len(mount) >= len(best)):
            best, kind = mount, after[0] if after else "?"
    return best, kind


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def space_error(path: Path, what: str, needed: int | None = None, *, quota: bool = False) -> StateSpaceError:
    """The one sentence for a write of `needed` bytes (`what` `path`) that found no room."""
    free = free_bytes(path)
    mount, kind = file_system(path)
    problem = "disk quota exceeded" if quota else "no space left"
    need = f"needs {format_size(needed)}, " if needed is not None else "failed with "
    message = f"{problem} on {mount} ({kind}): {what} {path} {need}{format_size(free)} free; {ADVICE}"
    return StateSpaceError(message, path, free, needed)


@contextlib.contextmanager
def room_for(
    path: Path, what: str, needed: int | None = None, *, partial: Path | None = None
) -> Iterator[None]:
    """Run a write of `path`; no room becomes StateSpaceError, and `partial` is removed on any failure.

    `partial` is the file the write leaves half done when it breaks (a temp file, or the
    target itself when it is written in place). It goes first, so the free space the
    sentence reports is what the disk really has once nixvmd has cleaned up.
    """
    try:
        yield
    except BaseException as exc:
        if partial is not None:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS:
            raise space_error(path, what, needed, quota=exc.errno == errno.EDQUOT) from None
        raise


def make_dirs(path: Path, what: str) -> None:
    """mkdir -p `path`; a file system out of room (or inodes) says so."""
    with room_for(path, what):
        path.mkdir(parents=True, exist_ok=True)


def write_atomic(path: Path, data: bytes | str, what: str) -> None:
    """`data` into `path` through a temp file renamed over it: readers see the old or the new file.

    The temp file sits beside `path` (same file system, so the rename is atomic) and is
    gone after any failure.
    """
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with room_for(path, what, len(payload), partial=tmp):
        with tmp.open("wb") as f:
            f.write(payload)
        os.replace(tmp, path)
