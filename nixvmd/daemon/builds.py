"""Kernel builds named so a person can tell them apart: release, build number, tree commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from nixvmd.results.record import build_label
from nixvmd.watch.git_tree import GitState, read_git_state
from nixvmd.watch.kernel_image import KernelImage, build_of, release_of

log = logging.getLogger("nixvmd")

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]


class BuildNames:
    """The kernel tree's git state, read once per kernel image in the background.

    The state is read when an image is first seen, close to the `make` that wrote it, and
    kept for that image: the run records it, the log and status name the build with it.
    `spawn` runs the reading as one of the daemon's tasks (so it ends with the daemon).
    """

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._git: tuple[str, asyncio.Future[GitState | None]] | None = None

    def git(self, kernel: KernelImage, tree: Path) -> asyncio.Future[GitState | None]:
        """The git state of `tree` for `kernel`; read now unless already read for this image."""
        if self._git is None or self._git[0] != kernel.digest:
            self._git = (kernel.digest, self._spawn(read_git_state(tree)))
        return self._git[1]

    async def git_state(self, kernel: KernelImage | None, tree: Path) -> dict[str, Any] | None:
        """The run record's `git` object for `kernel` (None: no kernel yet, the tree as it is
        now); waiting for it never cancels the reading."""
        reading = self.git(kernel, tree) if kernel is not None else self._spawn(read_git_state(tree))
        state = await asyncio.shield(reading)
        return state.to_json() if state is not None else None

    def label(self, kernel: KernelImage) -> str:
        """`kernel` in a person's words: "6.1.192 #7 a1b2c3d", the commit once it is known."""
        git = self._git[1] if self._git is not None and self._git[0] == kernel.digest else None
        state = git.result() if git is not None and git.done() and not git.cancelled() else None
        return build_label(
            release_of(kernel.version), build_of(kernel.version), state.to_json() if state else None
        )

    async def announce(self, kernel: KernelImage, tree: Path) -> None:
        """Log a new kernel by its build, once its commit is known."""
        await asyncio.shield(self.git(kernel, tree))
        log.info("new kernel %s (%s)", self.label(kernel), kernel.path)
