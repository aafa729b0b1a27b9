"""A finished run against the ones before it: regressions, fixes, and accepting known failures."""

from __future__ import annotations

import logging
from typing import Any

from nixvmd.config.schema import Config
from nixvmd.errors import NixvmdError
from nixvmd.results.baseline import Baseline, write_baseline
from nixvmd.results.compare import annotate
from nixvmd.results.record import Outcome, RunRecord, TestStatus
from nixvmd.results.store import RunStore

log = logging.getLogger("nixvmd")


def load_baseline(config: Config) -> Baseline | None:
    """The configured known-failures file; a broken one is reported and ignored."""
    path = config.baseline_path
    if not path.exists():
        return None
    try:
        return Baseline.load(path)
    except NixvmdError as exc:
        log.error("baseline ignored: %s", exc)
        return None


def compare_with_history(record: RunRecord, store: RunStore, config: Config) -> None:
    """Fill and save `record`'s regressions, fixes, known failures and new skips."""
    if record.outcome is Outcome.CANCELLED:
        return
    previous = store.latest(record.suite, before=record.id, finished_only=True)
    annotate(record, previous, load_baseline(config))
    store.save(record)
    if record.regressions:
        log.warning(
            "run %s: %d regression(s): %s",
            record.id,
            len(record.regressions),
            ", ".join(record.regressions),
        )


def accept_failures(store: RunStore, config: Config, run_id: str | None) -> dict[str, Any]:
    """Add the failures of run `run_id` (default: the latest) to the baseline file."""
    ids = store.ids()
    run_id = run_id or (ids[-1] if ids else None)
    if run_id is None:
        raise KeyError("no runs yet")
    record = store.load(run_id)
    failures = [t.name for t in record.tests if t.status in (TestStatus.FAIL, TestStatus.ERROR)]
    path = config.baseline_path
    existing = Baseline.load(path) if path.exists() else None
    write_baseline(path, failures, record.kernel_version, existing)
    log.info("baseline %s: accepted %d failure(s) of run %s", path, len(failures), run_id)
    return {"baseline": str(path), "run_id": run_id, "accepted": failures}
