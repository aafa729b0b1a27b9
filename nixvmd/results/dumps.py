"""The vmcores kept in the run store, and `debug.keep_dumps`: older ones go first.

A run's vmcore is beside its console.log: `runs/<id>/vmcore`, a resumed run's fresh VMs'
in `resume/<j>/`, a shard's in `shards/<k>/` (and its own `resume/<j>/`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from nixvmd.config.schema import DumpLimit
from nixvmd.results.store import LIVE_LOCK

log = logging.getLogger(__name__)

VMCORE = "vmcore"
# Where a VM of a run works, relative to the run's directory (run/resume.py, run/shards.py).
VM_DIRS = ("", "resume/*/", "shards/*/", "shards/*/resume/*/")


def run_dumps(run_dir: Path) -> list[Path]:
    """The vmcores of one run, the run directory's own first."""
    return [path for where in VM_DIRS for path in sorted(run_dir.glob(where + VMCORE)) if path.is_file()]


def stored_dumps(runs: Path) -> list[tuple[Path, Path]]:
    """Every vmcore in the run store `runs` as (run directory, dump)."""
    if not runs.is_dir():
        return []
    return [(run_dir, dump) for run_dir in sorted(runs.iterdir()) for dump in run_dumps(run_dir)]


def prune_dumps(runs: Path, limit: DumpLimit, current: Path) -> list[Path]:
    """Remove the oldest vmcores beyond `limit`; the removed ones.

    Dumps count newest first; those of the run `current` is inside of, and of any run still
    going (its `.live` lock file is there), are never removed but count towards the limit.
    """
    current = current.absolute()
    dated = []
    for run_dir, dump in stored_dumps(runs):
        with contextlib.suppress(OSError):
            st = dump.stat()
            busy = current.is_relative_to(run_dir.absolute()) or (run_dir / LIVE_LOCK).exists()
            dated.append((st.st_mtime, st.st_size, busy, dump))
    dated.sort(key=lambda d: d[0], reverse=True)
    count = size = 0
    full = False  # once a dump is over the limit, every older one is too: oldest go first
    removed = []
    for _, bytes_, busy, dump in dated:
        full = full or (limit.count is not None and count >= limit.count)
        full = full or (limit.size is not None and size + bytes_ > limit.size)
        if full and not busy:
            try:
                dump.unlink()
            except OSError as exc:
                log.warning("cannot remove the old vmcore %s: %s", dump, exc.strerror)
                continue
            removed.append(dump)
            continue
        count += 1
        size += bytes_
    return removed
