"""The user's hook (`notify.command`): a program given each finished run's JSON on stdin."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from nixvmd.process import end_group, start_group

log = logging.getLogger(__name__)


async def run_hook(
    command: Sequence[str] | str,
    run_json: Mapping[str, Any],
    *,
    timeout_s: float = 60.0,
    environ: Mapping[str, str] | None = None,
) -> int | None:
    """Run the user's hook with the run's JSON on stdin; its exit status, or None if it broke.

    A string runs through /bin/sh, a list is executed as is. NIXVMD_RUN_ID, NIXVMD_OUTCOME and
    NIXVMD_KERNEL_VERSION are set for hooks that only need those. A hook that fails, cannot
    start or outlives `timeout_s` (it is killed, with its children) is logged, never raised:
    a broken hook must not break the daemon.
    """
    env = dict(os.environ if environ is None else environ)
    env["NIXVMD_RUN_ID"] = str(run_json.get("id") or "")
    env["NIXVMD_OUTCOME"] = str(run_json.get("outcome") or "")
    env["NIXVMD_KERNEL_VERSION"] = str(run_json.get("kernel_version") or "")
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    shown = command if isinstance(command, str) else " ".join(command)
    try:
        process = await start_group(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    except (OSError, ValueError) as err:
        log.warning("hook %r could not start: %s", shown, err)
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(json.dumps(run_json).encode()), timeout_s)
    except TimeoutError:
        log.warning("hook %r still ran after %gs; killed it", shown, timeout_s)
        await end_group(process)
        return None
    except BaseException:
        await end_group(process)
        raise
    lines = output.decode(errors="replace").splitlines()
    if process.returncode == 0:
        log.debug("hook %r succeeded%s", shown, "".join(f"\n  {line}" for line in lines))
    else:
        tail = "".join(f"\n  {line}" for line in lines[-10:])
        log.warning("hook %r exited with status %s%s", shown, process.returncode, tail)
    return process.returncode
