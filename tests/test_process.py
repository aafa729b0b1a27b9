"""nixvmd.process: a process group started by nixvmd ends with its owner, however the owner ends."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from nixvmd.process import end_group, start_group
from tests.processes import exits_within


def _shell_with_a_child(fifo: Path, trap_term: bool = False) -> list[str]:
    """A shell whose child sleeps, the child's pid written to `fifo` once it runs."""
    trap = "trap '' TERM; " if trap_term else ""
    return ["/bin/sh", "-c", f"{trap}sleep 300 & echo $! > {fifo}; wait"]


def _children() -> set[int]:
    """This process's children, from every thread's /proc children list."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


async def _forked(before: set[int]) -> None:
    """Let the loop run one round at a time until a new child exists (asyncio forks in one of them)."""
    deadline = time.monotonic() + 10
    while not _children() - before:
        assert time.monotonic() < deadline, "nothing was forked"
        await asyncio.sleep(0)


@pytest.mark.parametrize("cancellations", [1, 2], ids=["cancelled", "cancelled-again-while-ending"])
def test_cancelled_while_starting_the_whole_group_ends(tmp_path: Path, cancellations: int) -> None:
    """The race CI met: the caller cancelled after the fork, before create_subprocess_exec returned.

    The loop is held (a blocking read of the fifo) between the fork and the cancellation, so
    the shell's child is running and asyncio has not finished setting the process up. A second
    cancellation lands while the first one's cleanup waits for the start to finish.
    """
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    started: list[asyncio.subprocess.Process] = []

    async def owner() -> None:
        started.append(await start_group(*_shell_with_a_child(fifo)))

    async def go() -> int:
        before = _children()
        task = asyncio.create_task(owner())
        await _forked(before)  # forked; the start now awaits its pipes
        child = int(fifo.read_text())  # blocks the loop: the task cannot have its process yet
        assert not started, "the start finished before the cancellation: the race was not made"
        for _ in range(cancellations):
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task
        return child

    child = asyncio.run(go())
    assert exits_within(child, 10), "the shell's child outlived its cancelled owner"


def test_a_command_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(start_group(str(tmp_path / "no-such-program")))


def test_end_group_asks_first_then_kills_what_stays(tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)

    async def go() -> tuple[int, int | None]:
        process = await start_group(*_shell_with_a_child(fifo, trap_term=True))
        child = int(await asyncio.to_thread(fifo.read_text))
        await end_group(process, term_grace_s=0.5)
        return child, process.returncode

    child, status = asyncio.run(go())
    assert status == -signal.SIGKILL, "the shell ignores SIGTERM, so SIGKILL must have ended it"
    assert exits_within(child, 10)


def test_the_group_leader_is_the_session_leader(tmp_path: Path) -> None:
    async def go() -> tuple[int, int, int]:
        process = await start_group("sleep", "300")
        try:
            return process.pid, os.getpgid(process.pid), os.getsid(process.pid)
        finally:
            await end_group(process)

    pid, group, session = asyncio.run(go())
    assert pid == group == session
