"""The shards of one run merged into its one record: pure functions over RunRecords.

Each shard ran in `<run>/shards/<k>/` with its own record; the run's record is what the
user sees: every test tagged with its shard, artefact paths rewritten to where they are
kept (`results/<k>/<section>/...`, the rest under `shards/<k>/`), the splats of all
shards, and the worst shard's outcome with a reason naming that shard.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from nixvmd.results.record import Outcome, RunRecord, TestResult

# Worst first: what one shard's outcome says about the whole run.
SEVERITY = (Outcome.ERROR, Outcome.CRASHED, Outcome.TIMEOUT, Outcome.FAILED, Outcome.PASSED)

RESULTS = "results"


def shard_dir_name(k: int) -> str:
    """Shard `k`'s directory inside the run directory."""
    return f"shards/{k}"


def shard_of(directory: Path) -> int:
    """The shard whose directory (`shard_dir_name`) `directory` is."""
    return int(directory.name)


def shard_artefact(path: str, k: int) -> str:
    """Where shard `k`'s artefact `path` (relative to its own directory) is, relative to the run's.

    The suite's results (`results/...`) move to `results/<k>/...`; anything else stays in
    the shard's directory. An absolute path is left alone.
    """
    if os.path.isabs(path):
        return path
    head, _, rest = path.partition("/")
    if head == RESULTS and rest:
        return f"{RESULTS}/{k}/{rest}"
    return f"{shard_dir_name(k)}/{path}"


def tagged(tests: Sequence[TestResult], k: int) -> list[TestResult]:
    """Shard `k`'s tests as the run's record lists them: with the shard, artefacts at their new paths."""
    return [
        dataclasses.replace(t, shard=k, artefacts=tuple(shard_artefact(a, k) for a in t.artefacts))
        for t in tests
    ]


def worst_shard(shards: Sequence[RunRecord]) -> int:
    """The index of the shard whose outcome is worst (the first of equals); -1 when none has one."""
    ranked = [(SEVERITY.index(s.outcome), k) for k, s in enumerate(shards) if s.outcome in SEVERITY]
    return min(ranked)[1] if ranked else -1


def merge_shards(record: RunRecord, shards: Sequence[RunRecord], *, cancelled: bool) -> None:
    """Fill the run's `record` from its `shards`' records (index = shard number).

    `cancelled`: the run as a whole was cancelled (a new kernel, nixvmctl stop), so it is
    `cancelled` whatever its shards found. Otherwise the worst shard decides (error >
    crashed > timeout > failed > passed; a shard cancelled because another broke counts
    for nothing), and its reason is the run's, prefixed "shard K: ". Phases are each the
    longest shard's (shards run at once); the run's duration is its wall time. The run is
    `cached` (Nix reused the results of an earlier build) when every shard is.
    """
    record.tests = [t for k, s in enumerate(shards) for t in tagged(s.tests, k)]
    record.splats = [splat for s in shards for splat in s.splats]
    record.suspect_lines = [line for s in shards for line in s.suspect_lines]
    first = shards[0] if shards else None
    if first is not None:
        record.accel = first.accel
        record.command = list(first.command)
        record.environment = dict(first.environment)
    record.kernel_version = record.kernel_version or next(
        (s.kernel_version for s in shards if s.kernel_version), ""
    )
    for s in shards:
        for name, seconds in s.phases.items():
            record.phases[name] = max(seconds, record.phases.get(name, 0.0))
    _merge_vmcores(record, shards)
    record.cached = bool(shards) and all(s.cached for s in shards)
    built = [s.built_at for s in shards if s.built_at is not None]
    record.built_at = min(built) if record.cached and built else None
    if cancelled:
        record.outcome = Outcome.CANCELLED
        record.reason = record.reason or "cancelled"
        return
    k = worst_shard(shards)
    if k < 0:
        record.outcome = Outcome.ERROR
        record.reason = "no shard of the run came to an end"
        return
    worst = shards[k]
    record.outcome = worst.outcome
    record.exit_status = worst.exit_status
    reasons = [
        f"shard {j}: {s.reason}" for j, s in enumerate(shards) if s.reason and s.outcome is worst.outcome
    ]
    if worst.outcome is Outcome.PASSED:
        record.reason = "; ".join(reasons)
    else:
        record.reason = f"shard {k}: {worst.reason}" if worst.reason else f"shard {k}: {worst.outcome}"


def _merge_vmcores(record: RunRecord, shards: Sequence[RunRecord]) -> None:
    """The run's vmcore: the worst shard's, else the first shard's that has one (each stays in
    `shards/<k>/`, listed in its shard.json); every shard's note, prefixed "shard K: "."""
    worst = worst_shard(shards)
    ranked = ([shards[worst]] if worst >= 0 else []) + list(shards)
    record.vmcore = next((s.vmcore for s in ranked if s.vmcore is not None), None)
    record.vmcore_note = "; ".join(
        f"shard {k}: {s.vmcore_note}" for k, s in enumerate(shards) if s.vmcore_note
    )
