"""Directory watches that follow their paths: through removal, moves, replacement, absence.

Parent directories are watched, never the files, so an atomic replace (rename over the
file) is seen as well as an in-place write; the daemon filters by name. An inotify watch
holds an inode, not a path: once `rm -rf arch`, `git clean -xdf`, `make mrproper`, a rename
dance or a swapped symlink takes a watched directory away, nothing that comes back at that
path would be seen. So each level of a watched directory's path is watched as well (the
levels above only for their own removal or move and for changes of the name that leads
on): when a level goes, the watch falls back to the deepest level still there and climbs
back down as the levels reappear, in order, so a level made before its parent's watch
landed is found too. Then it reports what it found: a file already there when the watch
landed was written while nobody was watching. A directory that does not exist yet is
watched for in the same way. No threads, no polling: inotify_fd.py reads the descriptor
when the event loop says it is readable.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from pathlib import Path

from nixvmd.watch.inotify_fd import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MASK_ADD,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    InotifyFd,
    RawEvent,
)

log = logging.getLogger("nixvmd.watch")

# A level above a watched directory: only its own end and the comings and goings of names.
_LEVEL_MASK = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
# Files count as changed when a writer closes them or something is renamed onto them;
# IN_MODIFY is left out on purpose: it fires for every write() of a half-written bzImage.
_ENTRIES_MASK = _LEVEL_MASK | IN_CLOSE_WRITE


class ChangeKind(enum.StrEnum):
    WRITTEN = "written"  # closed after writing, or a new file created and closed
    REPLACED = "replaced"  # renamed onto the watched name
    CREATED = "created"  # created (directories; files are reported when closed)
    REMOVED = "removed"  # removed or renamed away, or its directory went
    FOUND = "found"  # there when its directory's watch landed (again): written unseen
    MISSED = "missed"  # events were lost (inotify's queue overflowed): it may have changed


@dataclass(frozen=True)
class FileChange:
    """One change of a file under a watched directory."""

    path: Path
    kind: ChangeKind
    is_dir: bool = False


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _levels(directory: Path) -> list[tuple[Path, str | None]]:
    """Each level of `directory`'s path from / down, with the name leading on (None at the end)."""
    levels: list[tuple[Path, str | None]] = []
    level = Path(directory.anchor)
    for name in directory.parts[1:]:
        levels.append((level, name))
        level = level / name
    levels.append((level, None))
    return levels


def _under(path: Path, top: Path) -> bool:
    """`path` is `top` or below it (by name; cheaper than Path.parents over thousands of paths)."""
    return path == top or str(path).startswith(str(top).rstrip("/") + "/")


class DirectoryWatch:
    """inotify watches on directories, followed by path, delivering FileChange on the event loop.

    Use as a context manager inside a running loop. `add(dir)` watches one directory's
    entries (not below), `add_tree(dir)` a whole tree, following new subdirectories,
    `add_file(path)` one file (its directory's entries). Each keeps being followed when its
    directory goes away or is not there yet; when it comes back, a FOUND change names each
    file target present (and each directory target). `follow(...)` sets all targets at once
    and looks every watch up again.
    """

    def __init__(self, on_change: Callable[[FileChange], None]) -> None:
        self._on_change = on_change
        self._inotify = InotifyFd(self._on_events)
        self._files: set[Path] = set()
        self._dirs: set[Path] = set()
        self._trees: set[Path] = set()
        self._landed: dict[Path, int] = {}  # directory whose entries are watched -> its wd
        self._lost: set[Path] = set()  # landed directories whose watch went stale since
        self._subdirs: set[Path] = set()  # watched directories below tree roots
        self._leads_on: dict[Path, set[str]] = {}  # a watched level -> names leading to targets
        self._wd_of: dict[Path, int] = {}
        self._paths_of: dict[int, set[Path]] = {}
        self._inode_of: dict[int, tuple[int, int]] = {}
        self._warned: set[Path] = set()
        self._rearm = False
        self._rescan = False
        self.overflowed = 0

    def __enter__(self) -> DirectoryWatch:
        self._inotify.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._inotify.close()
        for collection in (self._files, self._dirs, self._trees, self._landed, self._lost, self._subdirs):
            collection.clear()
        self._leads_on.clear()
        self._wd_of.clear()
        self._paths_of.clear()
        self._inode_of.clear()

    @property
    def directories(self) -> list[Path]:
        """The directories whose entries are watched now (levels above them are not listed)."""
        return sorted(set(self._landed) | self._subdirs)

    def add(self, directory: Path) -> bool:
        """Watch one directory's entries; False when it is not there yet (it is watched for)."""
        directory = _absolute(directory)
        return self._add(self._dirs, directory, directory)

    def add_tree(self, root: Path) -> bool:
        """Watch `root` and every directory below it (skipping .git), following new ones."""
        root = _absolute(root)
        return self._add(self._trees, root, root)

    def add_file(self, path: Path) -> bool:
        """Watch one file through its directory; False when that is not there yet (watched for)."""
        path = _absolute(path)
        return self._add(self._files, path, path.parent)

    def remove(self, path: Path) -> None:
        """Stop watching a directory, tree or file given before."""
        path = _absolute(path)
        for targets in (self._files, self._dirs, self._trees):
            targets.discard(path)
        self._arm()

    def follow(
        self, *, files: Iterable[Path] = (), dirs: Iterable[Path] = (), trees: Iterable[Path] = ()
    ) -> list[Path]:
        """Watch exactly these targets, every watch looked up again and every tree walked again.

        What a reload does: a watch that went stale unnoticed is replaced. Returns the targets
        whose directory is not there (or cannot be watched) now; they are watched for.
        """
        wanted = [{_absolute(p) for p in group} for group in (files, dirs, trees)]
        new = (wanted[0] - self._files) | (wanted[1] - self._dirs) | (wanted[2] - self._trees)
        self._files, self._dirs, self._trees = wanted
        self._arm(quiet=new, rewalk=True)
        waiting = [f for f in self._files if f.parent not in self._landed]
        waiting += [d for d in self._dirs | self._trees if d not in self._landed]
        return sorted(waiting)

    def _add(self, targets: set[Path], target: Path, directory: Path) -> bool:
        if target not in targets or directory not in self._landed:
            targets.add(target)
            self._arm(quiet={target})  # the caller learns from the return value
        return directory in self._landed

    def _entries(self) -> dict[Path, list[tuple[Path, bool]]]:
        """Each directory whose entries are wanted, with the targets it serves (path, is_dir)."""
        entries: dict[Path, list[tuple[Path, bool]]] = {}
        for path in sorted(self._files):
            entries.setdefault(path.parent, []).append((path, False))
        for path in sorted(self._dirs | self._trees):
            entries.setdefault(path, []).append((path, True))
        return entries

    def _arm(self, *, quiet: Set[Path] = frozenset(), rewalk: bool = False, missed: bool = False) -> None:
        """Watch each level of each target's directory, from / down as far as it exists now.

        Top-down, so a level created before its parent's watch landed is found by trying it,
        and one created after is reported by the parent's watch. Then reports what arrived
        and what went, except targets in `quiet` (just added: the caller knows).
        """
        self._rearm = self._rescan = False
        entries = self._entries()
        before = dict(self._landed)
        had = set(self._landed) | self._lost
        keep: set[Path] = set()
        leads_on: dict[Path, set[str]] = {}
        landed: dict[Path, int] = {}
        for entry in entries:
            for level, name in _levels(entry):
                wd = self._watch(level, _ENTRIES_MASK if level in entries else _LEVEL_MASK)
                if wd is None:
                    break
                if wd < 0:
                    continue  # there but not watchable: the levels below may still be
                keep.add(level)
                if name is None:
                    landed[entry] = wd
                else:
                    leads_on.setdefault(level, set()).add(name)
        self._landed, self._leads_on = landed, leads_on
        # A tree that stayed on the same inode keeps its subdirectories' watches; one that
        # (re)appeared is walked again.
        stayed = {r for r in self._trees if r in landed and before.get(r) == landed[r]}
        self._subdirs = {d for d in self._subdirs if any(_under(d, r) for r in stayed)}
        for root in sorted(self._trees & set(landed)):
            if rewalk or root not in stayed:
                self._walk(root)
        for path in [p for p in self._wd_of if p not in keep and p not in self._subdirs]:
            self._unmap(path)
        self._lost = set()
        self._report(entries, before, had, quiet, missed)

    def _report(
        self,
        entries: dict[Path, list[tuple[Path, bool]]],
        before: dict[Path, int],
        had: set[Path],
        quiet: Set[Path],
        missed: bool,
    ) -> None:
        for entry, targets in entries.items():
            arrived = entry in self._landed and before.get(entry) != self._landed[entry]
            gone = entry in had and entry not in self._landed
            for target, is_dir in targets:
                if missed:
                    self._on_change(FileChange(target, ChangeKind.MISSED, is_dir))
                elif target in quiet or not (arrived or gone):
                    continue
                elif gone or not (is_dir or target.exists()):
                    if gone or entry in had:  # a file never seen there is not news
                        self._on_change(FileChange(target, ChangeKind.REMOVED, is_dir))
                else:
                    self._on_change(FileChange(target, ChangeKind.FOUND, is_dir))

    def _watch(self, path: Path, mask: int) -> int | None:
        """Watch `path`: its wd; None when it is missing; -1 when it is there but unwatchable."""
        try:
            # IN_MASK_ADD: a directory that is a level for one target and an entry for another
            # (or reached by two paths, through a symlink) keeps the union; a mask never
            # shrinks, and what it lets through in excess is filtered by path below.
            wd = self._inotify.add(path, mask | IN_MASK_ADD)
        except OSError as exc:
            if path not in self._warned:
                self._warned.add(path)
                hint = "; raise fs.inotify.max_user_watches" if exc.errno == errno.ENOSPC else ""
                log.warning("cannot watch %s: %s%s", path, os.strerror(exc.errno or 0), hint)
            return -1
        if wd is None:
            return None
        if self._wd_of.get(path) != wd:
            self._unmap(path)  # the path names another directory now
            self._wd_of[path] = wd
            self._paths_of.setdefault(wd, set()).add(path)
            if wd not in self._inode_of:
                try:
                    st = os.stat(path)
                except OSError:
                    return wd  # gone again already: its events will say so
                self._inode_of[wd] = (st.st_dev, st.st_ino)
        return wd

    def _unmap(self, path: Path) -> None:
        """Forget that `path` is watched; its watch goes when no other path shares it."""
        wd = self._wd_of.pop(path, None)
        if wd is None:
            return
        if self._landed.pop(path, None) is not None:
            self._lost.add(path)
        self._subdirs.discard(path)
        paths = self._paths_of.get(wd, set())
        paths.discard(path)
        if not paths:
            self._paths_of.pop(wd, None)
            self._inode_of.pop(wd, None)
            self._inotify.remove(wd)

    def _revalidate(self, top: Path) -> None:
        """Forget the watches at and below `top` whose path no longer names their directory."""
        for path in [p for p in self._wd_of if _under(p, top)]:
            try:
                st = os.stat(path)
                same = self._inode_of.get(self._wd_of[path]) == (st.st_dev, st.st_ino)
            except OSError:
                same = False
            if not same:
                self._unmap(path)

    def _walk(self, top: Path) -> None:
        """Watch every directory below `top` (which is watched already), skipping .git."""
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in dirnames:
                self._watch_subdir(Path(dirpath) / name)

    def _watch_subdir(self, directory: Path) -> None:
        wd = self._watch(directory, _ENTRIES_MASK)
        if wd is not None and wd >= 0:
            self._subdirs.add(directory)

    def _in_tree(self, directory: Path) -> bool:
        return directory in self._subdirs or (directory in self._trees and directory in self._landed)

    def _on_events(self, events: list[RawEvent]) -> None:
        for event in events:
            self._dispatch(event)
        if self._rescan or self._rearm:
            self._arm(rewalk=self._rescan, missed=self._rescan)

    def _dispatch(self, event: RawEvent) -> None:
        if event.mask & IN_Q_OVERFLOW:
            # Events were dropped: any target may have changed and any level come or gone.
            self.overflowed += 1
            self._rescan = True
            return
        paths = self._paths_of.get(event.wd)
        if not paths:
            return  # a watch already forgotten; its last events are stale
        if event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
            if any(p in self._landed or p in self._leads_on for p in paths):
                self._rearm = True
            if event.mask & IN_MOVE_SELF:
                for path in sorted(paths):
                    self._revalidate(path)  # it and the watches below it, which moved with it
            else:
                # Deleted (or its file system unmounted): whatever was below went first.
                for path in list(paths):
                    self._unmap(path)
            return
        for path in sorted(paths):
            self._entry_event(path, event)

    def _entry_event(self, directory: Path, event: RawEvent) -> None:
        path = directory / event.name
        if event.name in self._leads_on.get(directory, ()):
            # A level on the way to a target came, went or was replaced.
            self._revalidate(path)
            self._rearm = True
        if directory not in self._landed and directory not in self._subdirs:
            return
        mask = event.mask
        is_dir = bool(mask & IN_ISDIR)
        if is_dir and mask & (IN_CREATE | IN_MOVED_TO) and self._in_tree(directory) and event.name != ".git":
            self._watch_subdir(path)
            if path in self._subdirs:
                self._walk(path)  # levels made before its watch landed
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
