"""Questions about past runs, answered from the run store.

The daemon answers `results`, `history` and `logs RUN` with these, and nixvmctl calls them
itself when no daemon runs: one set of answers whichever reads the state dir. Runs found
`running` are shown as they are on disk (turning a dead daemon's run into `error` is the
daemon's job when it starts).
"""

from __future__ import annotations

from typing import Any

from nixvmd.errors import NixvmdError
from nixvmd.results.store import RunStore


class NoSuchRun(NixvmdError):
    """The run asked for has no record (or there are no runs at all)."""


def resolve_run(store: RunStore, run_id: str | None) -> str:
    """`run_id` when it has a record, else the latest run's id when None; NoSuchRun otherwise."""
    if run_id is None:
        ids = store.ids()
        if not ids:
            raise NoSuchRun(f"no runs yet in {store.root}")
        return ids[-1]
    try:
        store.load(run_id)
    except KeyError:
        raise NoSuchRun(f"no run {run_id!r}; nixvmctl history lists the runs") from None
    return run_id


def run_results(store: RunStore, run_id: str | None) -> dict[str, Any]:
    """The record of run `run_id` (default: the latest) as run.json has it."""
    run_id = resolve_run(store, run_id)
    try:
        return store.load(run_id).to_json()
    except KeyError:  # removed between the two looks
        raise NoSuchRun(f"no run {run_id!r}; nixvmctl history lists the runs") from None


def run_history(store: RunStore, limit: int) -> list[dict[str, Any]]:
    """The latest `limit` runs, oldest first: each run's summary, when it started and what it ran."""
    out = []
    for run_id in store.ids()[-limit:] if limit > 0 else []:
        try:
            record = store.load(run_id)
        except KeyError:
            continue
        out.append({**record.summary(), "started_at": record.started_at, "narrowed_to": record.narrowed_to})
    return out


def run_console(store: RunStore, run_id: str) -> dict[str, Any]:
    """Where run `run_id`'s console.log is; NoSuchRun when the run or its console is missing."""
    run_id = resolve_run(store, run_id)
    path = store.path(run_id) / "console.log"
    shards = sorted(store.path(run_id).glob("shards/*/console.log"))
    if not path.is_file() and shards:
        raise NoSuchRun(
            f"run {run_id} ran in {len(shards)} shards, each with its own console log: "
            + ", ".join(str(p) for p in shards)
        )
    if not path.is_file():
        reason = store.load(run_id).reason
        raise NoSuchRun(
            f"run {run_id} has no console log (no VM was started for it{': ' + reason if reason else ''})"
        )
    return {"run_id": run_id, "path": str(path)}
