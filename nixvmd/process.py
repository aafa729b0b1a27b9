"""Process groups nixvmd starts: the whole group ends with its owner, even one cancelled while it starts.

asyncio's `create_subprocess_exec` forks and execs at once, then awaits the pipes' setup; a
caller cancelled in between gets the process killed by asyncio, that process alone, so a
shell's children, make's compilers, Nix's builders or a QEMU runner's QEMU would live on.
`start_group` puts the command in a session (and process group) of its own and, when the
caller is cancelled before it has the process, ends the whole group before the
cancellation goes on. `end_group` is how every owner ends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when nixvmd dies, so the command cannot outlive it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def start_group(
    *argv: str, die_with_parent: bool = False, **options: Any
) -> asyncio.subprocess.Process:
    """`argv` started in a session of its own (its pid is the group's id), as create_subprocess_exec would.

    `die_with_parent` adds PR_SET_PDEATHSIG, so the leader is killed if nixvmd dies. OSError
    when it cannot start, as create_subprocess_exec raises it.
    """
    preexec = _die_with_parent if die_with_parent else None
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(*argv, start_new_session=True, preexec_fn=preexec, **options)
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        await _end_once_started(starting)
        raise


async def _end_once_started(starting: asyncio.Future[asyncio.subprocess.Process]) -> None:
    # Cancelled again while the start finishes: the group still has to go.
    while not starting.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([starting])
    if not starting.cancelled() and starting.exception() is None:
        await end_group(starting.result())


def signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Send `sig` to the process group `process` leads; nothing when the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def end_group(process: asyncio.subprocess.Process, term_grace_s: float = 0) -> None:
    """End the group `process` leads, wait for its leader: SIGKILL, after SIGTERM and `term_grace_s` if set.

    The group gets SIGKILL even when its leader has already exited, for the children it left.
    """
    try:
        if term_grace_s > 0 and process.returncode is None:
            signal_group(process, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), term_grace_s)
    finally:
        signal_group(process, signal.SIGKILL)
        await process.wait()
