"""Short Nix commands whose stdout is the answer: run in their own process group, one sentence on failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from nixvmd.errors import DistributeError
from nixvmd.image.nix import clean_line

NIX_STORE = "nix-store"
NIX = "nix"


async def nix_stdout(argv: Sequence[str], what: str) -> str:
    """What a short Nix command prints on stdout; DistributeError naming `what` when it fails.

    The command runs in its own process group, ended with it if the caller is cancelled.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise DistributeError(
            f"{argv[0]} is not installed or not on PATH: install Nix (on Debian, scripts/setup-nix.sh)"
        ) from exc
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        lines = [clean_line(line) for line in err.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")] or lines or ["nothing"]
        raise DistributeError(f"{what}: {argv[0]} said {errors[0].removeprefix('error:').strip()}")
    return out.decode(errors="replace")
