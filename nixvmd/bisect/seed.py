"""A new worktree seeded with the developer's build, so its first build is incremental.

make decides by modification times. The worktree is checked out at the tree's HEAD; the
tree's build outputs (the files git ignores: objects, .config, .cmd files) are copied in
with their times, and every tracked file whose content is the tree's gets the tree's time.
The worktree then looks to make exactly as the tree does: what is up to date there is up
to date here. A file the developer changed since HEAD keeps its checkout time (newer than
every object), so what depends on it is rebuilt. The tree itself is only read.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path


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
