"""Helpers for DirectoryWatch tests: the changes it delivers, awaited with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from nixvmd.watch.inotify import DirectoryWatch, FileChange

EVENT_TIMEOUT = 5.0
QUIET_PERIOD = 0.3


class Changes:
    """The FileChanges a DirectoryWatch delivered, awaited one at a time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[FileChange] = asyncio.Queue()

    def __call__(self, change: FileChange) -> None:
        self.queue.put_nowait(change)

    async def next(self) -> FileChange:
        return await asyncio.wait_for(self.queue.get(), EVENT_TIMEOUT)

    async def next_for(self, path: Path) -> FileChange:
        """The next change of `path`, skipping changes of other files."""
        while True:
            change = await self.next()
            if change.path == path:
                return change

    async def take(self, count: int) -> list[FileChange]:
        """The next `count` changes, in order."""
        return [await self.next() for _ in range(count)]

    async def assert_quiet(self) -> None:
        """No change arrives within QUIET_PERIOD."""
        try:
            change = await asyncio.wait_for(self.queue.get(), QUIET_PERIOD)
        except TimeoutError:
            return
        pytest.fail(f"unexpected change {change}")


Scenario = Callable[[DirectoryWatch, Changes], Awaitable[None]]


def run_watch(scenario: Scenario) -> None:
    """Run `scenario` with an open DirectoryWatch on a fresh event loop."""

    async def main() -> None:
        changes = Changes()
        with DirectoryWatch(changes) as watch:
            await scenario(watch, changes)

    asyncio.run(main())


def write_in_place(path: Path, chunks: int = 8) -> None:
    """Write like kbuild does: open with O_TRUNC, several write()s, close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for n in range(chunks):
            os.write(fd, bytes([n]) * 4096)
    finally:
        os.close(fd)


def inotify_fds() -> int:
    """How many inotify descriptors this process holds."""
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


def inotify_watches() -> int:
    """How many inotify watches this process holds, as the kernel counts them (fdinfo)."""
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/self/fdinfo/{entry}").read_text()
        except OSError:
            continue
        count += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return count


@contextlib.contextmanager
def tmpfs_over(directory: Path) -> Iterator[None]:
    """A small tmpfs mounted over `directory` (a watch on it sees nothing), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "nixvmd-test", str(directory)], check=True)
    try:
        yield
    finally:
        unmount(directory)


def unmount(directory: Path) -> None:
    """Unmount what is mounted on `directory`, if anything."""
    if os.path.ismount(directory):
        subprocess.run(["umount", str(directory)], check=True)
