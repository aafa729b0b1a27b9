"""`nixvmctl dump RUN`: a run's vmcores, each with the kernel release it holds, and the vmlinux to open them.

Answered by the daemon and by nixvmctl without one alike (as results/queries.py). A run's
dumps are its record's `vmcore`, its resumed VMs' (`attempts`) and its shards' (each
shard's `shard.json`); a dump `debug.keep_dumps` removed since is listed as removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nixvmd.results.queries import NoSuchRun, resolve_run
from nixvmd.results.record import RunRecord, Vmcore
from nixvmd.results.store import RunStore
from nixvmd.results.vmcore_file import VmcoreError, read_vmcoreinfo


def run_dumps(store: RunStore, run_id: str | None, tree: Path) -> dict[str, Any]:
    """Run `run_id`'s (default: the latest run's) vmcores and `tree`'s vmlinux; NoSuchRun when it has none."""
    run_id = resolve_run(store, run_id)
    try:
        record = store.load(run_id)
    except KeyError:
        raise NoSuchRun(f"no run {run_id!r}; nixvmctl history lists the runs") from None
    dumps = [_described(vmcore, where) for vmcore, where in _vmcores(record, store.path(run_id))]
    if not dumps:
        why = f": {record.vmcore_note}" if record.vmcore_note else ""
        raise NoSuchRun(f"run {run_id} ({record.outcome}) has no vmcore{why}")
    vmlinux = tree / "vmlinux"
    return {
        "run_id": run_id,
        "kernel_version": record.kernel_version,
        "dumps": dumps,
        "vmlinux": str(vmlinux) if vmlinux.is_file() else None,
        "tree": str(tree),
        "note": record.vmcore_note,
    }


def _vmcores(record: RunRecord, run_dir: Path) -> list[tuple[Vmcore, str]]:
    """Every dump the record and its shards' records name, each once, with the VM it is of
    (its directory inside the run's: "shards/1", "resume/2"; "run" for the run directory)."""
    found: dict[str, Vmcore] = {}

    def add(rec: RunRecord) -> None:
        for vmcore in (rec.vmcore, *(a.vmcore for a in rec.attempts)):
            if vmcore is not None:
                found.setdefault(vmcore.path, vmcore)

    add(record)
    for shard in sorted(run_dir.glob("shards/*/shard.json")):
        try:
            add(RunRecord.from_json(json.loads(shard.read_text())))
        except (OSError, ValueError, KeyError):
            continue
    return [(vmcore, _vm_of(Path(vmcore.path), run_dir)) for vmcore in found.values()]


def _vm_of(dump: Path, run_dir: Path) -> str:
    """The directory of the VM that `dump` is of, relative to the run's ("run": the run's own)."""
    if dump.parent == run_dir:
        return "run"
    try:
        return str(dump.parent.relative_to(run_dir))
    except ValueError:
        return str(dump.parent)


def _described(vmcore: Vmcore, where: str) -> dict[str, Any]:
    """A dump as `nixvmctl dump` shows it: its record, its VM, whether it is still there, its release."""
    out: dict[str, Any] = {**vmcore.to_json(), "vm": where, "present": Path(vmcore.path).is_file()}
    if out["present"]:
        try:
            out["release"] = read_vmcoreinfo(Path(vmcore.path)).release
        except VmcoreError as exc:
            out["problem"] = str(exc)
    return out
