"""A new worktree seeded with the developer's build, so its first build is incremental.

make decides by modification times. The worktree is checked out at the tree's HEAD; the
tree's build outputs (the files git ignores: objects, .config, .cmd files) are copied in
with their times, and every tracked file whose content is the tree's gets the tree's time.
The worktree then looks to make exactly as the tree does: what is up to date there is up
to date here. A file the developer changed since HEAD keeps its checkout time (newer than
every object), so what depends on it is rebuilt. The tree itself is only read.

Build records that name the tree by its absolute path (kbuild's and tools/build's `.cmd`
and `.d` files: objtool is built with absolute paths) are rewritten to name the worktree,
keeping their times; otherwise the recorded commands differ, the tool is rebuilt, and
every object that depends on it with it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Build records: text, small, naming their commands and dependencies.
RECORD_SUFFIXES = (".cmd", ".d")
RECORD_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Seeded:
    """What seeding copied: files and bytes."""

    files: int
    size: int


def _git_names(tree: Path, *args: str) -> list[str]:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    out = subprocess.run(
        ["git", *args, "-z"], cwd=tree, env=env, capture_output=True, check=True, stdin=subprocess.DEVNULL
    ).stdout
    return [name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]


def seed_worktree(tree: Path, worktree: Path) -> Seeded:
    """Copy `tree`'s build outputs into `worktree` (checked out at `tree`'s HEAD) and align their times."""
    changed = set(_git_names(tree, "diff", "--name-only", "HEAD"))
    # The tree's path as make's $(CURDIR) has it (symlinks resolved), as a whole path (not
    # the start of a longer name such as linux2/).
    real = os.fsencode(os.path.realpath(tree))
    tree_path = re.compile(re.escape(real) + rb"(?=[/\s:'\"]|$)", re.MULTILINE)
    files = size = 0
    for name in _git_names(tree, "ls-files", "--others", "--ignored", "--exclude-standard"):
        source, target = tree / name, worktree / name
        try:
            mode = source.lstat().st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            continue  # a socket or fifo is no build output, and reading a fifo would block
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        if stat.S_ISREG(mode) and name.endswith(RECORD_SUFFIXES):
            _relocate(target, tree_path, os.fsencode(os.path.realpath(worktree)))
        files += 1
        size += source.lstat().st_size
    for name in _git_names(worktree, "ls-files"):
        if name in changed:
            continue
        try:
            times = (tree / name).lstat()
            os.utime(worktree / name, ns=(times.st_atime_ns, times.st_mtime_ns), follow_symlinks=False)
        except FileNotFoundError:
            continue
    return Seeded(files, size)


def _relocate(record: Path, tree_path: re.Pattern[bytes], worktree: bytes) -> None:
    """Make a copied build record name the worktree where it named the tree; its times stay."""
    times = record.stat()
    if times.st_size > RECORD_MAX_BYTES:
        return
    text = record.read_bytes()
    moved = tree_path.sub(lambda _: worktree, text)
    if moved != text:
        record.write_bytes(moved)
        os.utime(record, ns=(times.st_atime_ns, times.st_mtime_ns))
