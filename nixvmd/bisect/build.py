"""Building a bisect step: `kernel.build` run by the shell in the worktree, its output in the step's log.

The command runs in a process group of its own that dies with nixvmd (PDEATHSIG on the
shell, the whole group ended when the step is cancelled, even while it starts), so no
compiler outlives a bisect.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nixvmd.process import end_group, start_group


async def build_kernel(command: str, tree: Path, log: Path) -> int:
    """Run `command` with /bin/sh in `tree`, stdout and stderr into `log`; its exit status."""
    with log.open("ab") as out:
        out.write(f"$ cd {tree} && {command}\n".encode())
        out.flush()
        process = await start_group(
            "/bin/sh",
            "-c",
            command,
            cwd=tree,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            die_with_parent=True,
        )
    try:
        return await process.wait()
    finally:
        if process.returncode is None:  # cancelled: the shell, make and the compilers go together
            await end_group(process)
