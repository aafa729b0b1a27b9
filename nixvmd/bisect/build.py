"""Building a bisect step: `kernel.build` run by the shell in the worktree, its output in the step's log.

The command runs in a process group of its own that dies with nixvmd (PDEATHSIG on the
shell, the whole group killed when the step is cancelled), so no compiler outlives a bisect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _own_group_dying_with_parent() -> None:
    """In the child before exec: a process group of its own, and SIGKILL when nixvmd dies."""
    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def build_kernel(command: str, tree: Path, log: Path) -> int:
    """Run `command` with /bin/sh in `tree`, stdout and stderr into `log`; its exit status."""
    with log.open("ab") as out:
        out.write(f"$ cd {tree} && {command}\n".encode())
        out.flush()
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=tree,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_own_group_dying_with_parent,
        )
    try:
        return await process.wait()
    finally:
        if process.returncode is None:  # cancelled: the shell, make and the compilers go together
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
