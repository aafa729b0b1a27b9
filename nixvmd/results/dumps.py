"""The vmcores kept in the run store, and `debug.keep_dumps`: older ones go first.

A run's vmcore is beside its console.log: `runs/<id>/vmcore`, a resumed run's fresh VMs'
in `resume/<j>/`, a shard's in `shards/<k>/` (and its own `resume/<j>/`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Stored:
    path: Path
    mtime: float
    size: int
    blocks: int  # bytes on disk: what removing it gives back
    busy: bool  # of the current run or of a run still going: never removed


def _stored_newest_first(runs: Path, current: Path) -> list[_Stored]:
    current = current.absolute()
    stored = []
    for run_dir, dump in stored_dumps(runs):
        with contextlib.suppress(OSError):
            st = dump.stat()
            busy = current.is_relative_to(run_dir.absolute()) or (run_dir / LIVE_LOCK).exists()
            stored.append(_Stored(dump, st.st_mtime, st.st_size, st.st_blocks * 512, busy))
    stored.sort(key=lambda d: d.mtime, reverse=True)
    return stored


def _remove(dumps: list[_Stored]) -> list[Path]:
    removed = []
    for dump in dumps:
        try:
            dump.path.unlink()
        except OSError as exc:
            log.warning("cannot remove the old vmcore %s: %s", dump.path, exc.strerror)
            continue
        removed.append(dump.path)
    return removed


def prune_dumps(runs: Path, limit: DumpLimit, current: Path) -> list[Path]:
    """Remove the oldest vmcores beyond `limit`; the removed ones.

    Dumps count newest first; those of the run `current` is inside of, and of any run still
    going (its `.live` lock file is there), are never removed but count towards the limit.
    """
    count = size = 0
    full = False  # once a dump is over the limit, every older one is too: oldest go first
    beyond = []
    for dump in _stored_newest_first(runs, current):
        full = full or (limit.count is not None and count >= limit.count)
        full = full or (limit.size is not None and size + dump.size > limit.size)
        if full and not dump.busy:
            beyond.append(dump)
            continue
        count += 1
        size += dump.size
    return _remove(beyond)


def make_room(runs: Path, short: int, current: Path) -> list[Path]:
    """Remove the oldest vmcores until `short` more bytes are free; the removed ones.

    A new crash's dump is worth more than an old one's, whatever `debug.keep_dumps` allows.
    Never the dumps of the run `current` is inside of nor of a run still going; and none at
    all when removing every other one would still leave too little room.
    """
    chosen, freed = [], 0
    for dump in reversed(_stored_newest_first(runs, current)):
        if freed >= short:
            break
        if not dump.busy:
            chosen.append(dump)
            freed += dump.blocks
    return _remove(chosen) if freed >= short else []
