"""Which commit a kernel tree has checked out, and whether its tracked files differ from it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A run must never wait long on git (a cold cache on a big tree, a hung network file system):
# past this, the run is simply recorded without its commit.
GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GitState:
    """The tree's HEAD commit and whether tracked files have changes (untracked ones do not count)."""

    commit: str
    dirty: bool

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty}


async def read_git_state(tree: Path, timeout: float = GIT_TIMEOUT_S) -> GitState | None:
    """`tree`'s git state; None when it is not in a git work tree or git cannot say in time.

    Never raises for git's sake: a missing git, a refused repository (safe.directory) or a
    slow one only means the run goes unlabelled. Optional locks are off, so reading the
    state never takes index.lock from under the developer's own git commands.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    head = await _git(tree, deadline, "rev-parse", "--verify", "--quiet", "HEAD")
    if head is None or not head.strip():
        return None
    changes = await _git(tree, deadline, "status", "--porcelain", "--untracked-files=no")
    if changes is None:
        return None
    return GitState(commit=head.strip(), dirty=bool(changes.strip()))


async def _git(tree: Path, deadline: float, *args: str) -> str | None:
    """git's stdout for `args` run in `tree`; None when it failed or did not end by `deadline`."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(tree),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return None
    try:
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        output, _ = await asyncio.wait_for(process.communicate(), remaining)
    except TimeoutError:
        return None
    finally:
        if process.returncode is None:  # timed out or cancelled: git goes too
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        return None
    return output.decode("utf-8", "replace")
