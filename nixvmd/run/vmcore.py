"""A vmcore for a guest that broke: QEMU dumps the guest's memory over QMP before nixvmd quits it.

When a run crashed (a panic, an oops, a guest that went down by itself) — or hung, with
`debug.dump = "always-on-timeout"` — `dump_if_wanted` asks QEMU for `dump-guest-memory`
(`paging: false`; the first of `FORMATS` that `query-dump-guest-memory-capability` offers,
else ELF) into `<run>/vmcore`, detached, and waits for QMP's DUMP_COMPLETED at most
`dump_timeout` seconds. The guest is still there: QEMU pauses a guest that reboots or powers
off (vm/cmdline.py). Before asking, the state dir must have room for the guest's memory (the
dump's upper bound), if need be once the oldest dumps of other, finished runs are removed
(a new crash's dump is worth more than an old one's); else the dump is skipped. A dump
that is skipped, fails or times out is one sentence in the record (`vmcore_note`) and the
log, never a change of the run's outcome, and never a partial file: QEMU writes
`.vmcore.partial`, renamed once complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from nixvmd.config.schema import Config, DumpPolicy
from nixvmd.config.units import format_size
from nixvmd.results.dumps import make_room, prune_dumps
from nixvmd.results.record import Outcome, RunRecord, Vmcore
from nixvmd.results.space import file_system, free_bytes
from nixvmd.run.decide import Transcript
from nixvmd.vm.machine import Machine, RunState

log = logging.getLogger(__name__)

VMCORE = "vmcore"
PARTIAL = ".vmcore.partial"
# Smallest first among those crash and drgn read: kdump (compressed, zero pages left out),
# raw before makedumpfile's flattened format (QEMU before 8.2 writes only that), then ELF.
FORMATS = ("kdump-raw-zlib", "kdump-raw-lzo", "kdump-zlib", "kdump-lzo", "elf")
HEADROOM = 1 << 20
"""What a dump may need beyond the guest's memory: headers, notes, the page bitmaps."""
SECONDS_PER_GIB = 120.0
MIN_SECONDS = 60.0


def dump_timeout(memory: int) -> float:
    """How long a dump of `memory` bytes of guest may take (TCG on a busy host is slow)."""
    return max(MIN_SECONDS, SECONDS_PER_GIB * memory / (1 << 30))


def wanted(policy: DumpPolicy, outcome: Outcome | None, transcript: Transcript) -> bool:
    """Whether a run that ended so gets a vmcore under `policy`.

    "crash": a crashed run, and a run that timed out after a panic or an oops (a NixOS
    guest whose agent an oops killed hangs). "always-on-timeout": any timeout too.
    """
    if policy is DumpPolicy.NEVER:
        return False
    if outcome is Outcome.CRASHED:
        return True
    if outcome is Outcome.TIMEOUT:
        return policy is DumpPolicy.ALWAYS_ON_TIMEOUT or bool(transcript.panic_line or transcript.oops_line)
    return False


def choose_format(offered: object) -> str:
    """The first of FORMATS in QEMU's answer to query-dump-guest-memory-capability (ELF by default)."""
    formats = offered.get("formats", []) if isinstance(offered, dict) else []
    return next((f for f in FORMATS if f in formats), "elf")


def room_note(run_dir: Path, needed: int, runs: Path) -> str:
    """'' when the file system of `run_dir` has `needed` bytes free, if need be once the oldest
    vmcores of the run store `runs` are removed (results/dumps.py `make_room`); else why the
    dump is skipped."""
    short = needed - free_bytes(run_dir)
    if short > 0:
        for removed in make_room(runs, short, run_dir):
            log.info("removed the vmcore %s to make room for a new one", removed)
    free = free_bytes(run_dir)
    if free >= needed:
        return ""
    mount, _ = file_system(run_dir)
    return f"vmcore skipped: {format_size(needed)} needed, {format_size(free)} free on {mount}"


async def take_vmcore(
    machine: Machine, run_dir: Path, memory: int, timeout: float, runs: Path
) -> tuple[Vmcore | None, str]:
    """Dump the guest of `machine` into `run_dir`/vmcore: the Vmcore, or None and the sentence why not.

    `runs` is the run store, whose oldest dumps may go to make room for this one.
    """
    if machine.state is not RunState.RUNNING or machine.returncode is not None:
        return None, "vmcore not taken: QEMU had already ended"
    note = room_note(run_dir, memory + HEADROOM, runs)
    if note:
        return None, note
    partial, target = run_dir / PARTIAL, run_dir / VMCORE
    try:
        fmt = choose_format(await machine.execute("query-dump-guest-memory-capability"))
        arguments = {"paging": False, "protocol": f"file:{partial}", "detach": True, "format": fmt}
        with machine.qmp.listener("DUMP_COMPLETED") as events:
            await machine.execute("dump-guest-memory", arguments)
            try:
                event = await asyncio.wait_for(events.get(), timeout)
            except TimeoutError:
                return None, f"vmcore not taken: QEMU's dump did not finish within {timeout:g}s"
        problem = _failure(event.get("data"))
        if problem:
            return None, f"vmcore not taken: {problem}"
        os.replace(partial, target)
        return Vmcore(str(target), target.stat().st_size, fmt), ""
    except Exception as exc:  # QMP refused, or QEMU went away: the run's verdict stands
        return None, f"vmcore not taken: {_qmp_error(exc)}"
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def _failure(data: Any) -> str:
    """What DUMP_COMPLETED's data says went wrong; '' for a complete dump."""
    if not isinstance(data, dict):
        return "QEMU's DUMP_COMPLETED event carried no result"
    if data.get("error"):
        return f"QEMU's dump failed: {data['error']}"
    status = data.get("result", {}).get("status") if isinstance(data.get("result"), dict) else None
    return "" if status in (None, "completed") else f"QEMU's dump ended {status}"


def _qmp_error(exc: Exception) -> str:
    """An exception of the QMP exchange in words."""
    error = getattr(exc, "error", None)  # qemu.qmp's ExecuteError: QEMU's own message
    desc = getattr(error, "desc", None)
    if desc:
        return f"QEMU refused the dump: {desc}"
    return f"QEMU's dump broke off: {exc or type(exc).__name__}"


async def dump_if_wanted(
    config: Config, machine: Machine, transcript: Transcript, record: RunRecord, run_dir: Path
) -> bool:
    """Take the run's vmcore when `debug.dump` wants one for how it ended; True when one was taken.

    The record gets `vmcore`, or `vmcore_note` saying why there is none; older dumps beyond
    `debug.keep_dumps` are then removed (never this run's, nor a run still going).
    """
    if not wanted(config.debug.dump, record.outcome, transcript):
        return False
    memory = config.vm.memory
    log.info(
        "run %s: dumping the guest's memory (%s) into %s", record.id, format_size(memory), run_dir / VMCORE
    )
    runs = config.daemon.state_dir / "runs"
    vmcore, note = await take_vmcore(machine, run_dir, memory, dump_timeout(memory), runs)
    record.vmcore = record.vmcore or vmcore
    if note:
        record.vmcore_note = note
        log.warning("run %s: %s", record.id, note)
        return False
    assert vmcore is not None
    log.info("run %s: vmcore %s (%s, %s)", record.id, vmcore.path, format_size(vmcore.size), vmcore.format)
    for removed in prune_dumps(runs, config.debug.keep_dumps, run_dir):
        log.info("removed the vmcore %s (debug.keep_dumps)", removed)
    return True
