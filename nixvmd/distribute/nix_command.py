"""Short Nix commands whose stdout is the answer: run in their own process group, one sentence on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nixvmd.errors import DistributeError
from nixvmd.image.nix import clean_line
from nixvmd.process import end_group, start_group

NIX_STORE = "nix-store"
NIX = "nix"


async def nix_stdout(argv: Sequence[str], what: str) -> str:
    """What a short Nix command prints on stdout; DistributeError naming `what` when it fails.

    The command runs in its own process group, ended with it if the caller is cancelled.
    """
    try:
        proc = await start_group(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise DistributeError(
            f"{argv[0]} is not installed or not on PATH: install Nix (on Debian, scripts/setup-nix.sh)"
        ) from exc
    except OSError as exc:
        raise DistributeError(f"{what}: cannot run {argv[0]} ({exc.strerror or exc})") from None
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            await end_group(proc)
    if proc.returncode != 0:
        lines = [clean_line(line) for line in err.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")] or lines
        errors = errors or [f"nothing and exited with status {proc.returncode}"]
        raise DistributeError(f"{what}: {argv[0]} said {errors[0].removeprefix('error:').strip()}")
    return out.decode(errors="replace")
