"""What one bisect step says of its commit: a build failure skips it, the tests' results judge it.

Pure: a step's build result and run record in, a verdict and why out.

- the build failed: skip (git tries a commit next to it);
- the run is nixvmd's failure (`error`) or was cancelled: `error`, never a verdict on the kernel;
- the guest crashed or hung: bad;
- any of the tests failed (fail, error, crashed, timeout): bad;
- all of them passed: good;
- one of them did not run, or was skipped: skip (this commit cannot say; it may predate the test).

With no tests named, the run's outcome decides (failed: bad, passed: good).
"""

from __future__ import annotations

from collections.abc import Sequence

from nixvmd.bisect.record import Verdict
from nixvmd.results.compare import worst_by_name
from nixvmd.results.record import Outcome, RunRecord, TestStatus


def classify(built: bool, record: RunRecord | None, tests: Sequence[str]) -> tuple[Verdict, str]:
    """The verdict on a step's commit and the reason, in words."""
    if not built:
        return Verdict.SKIP, "the build failed"
    if record is None or record.outcome in (None, Outcome.RUNNING):
        return Verdict.ERROR, "the step's run has no outcome"
    if record.outcome is Outcome.ERROR:
        return Verdict.ERROR, f"run {record.id} broke: {record.reason or 'error'}"
    if record.outcome is Outcome.CANCELLED:
        return Verdict.ERROR, f"run {record.id} was cancelled"
    if record.outcome in (Outcome.CRASHED, Outcome.TIMEOUT):
        return Verdict.BAD, f"run {record.id} {record.outcome}: {record.reason}".rstrip(": ")
    if not tests:
        if record.outcome is Outcome.FAILED:
            return Verdict.BAD, f"run {record.id} failed"
        return Verdict.GOOD, f"run {record.id} passed"
    statuses = worst_by_name(record.tests)
    failing = [t for t in tests if t in statuses and statuses[t].failing]
    if failing:
        return Verdict.BAD, f"{', '.join(failing)} failed"
    missing = [t for t in tests if statuses.get(t) is not TestStatus.PASS]
    if missing:
        return Verdict.SKIP, f"{', '.join(missing)} did not run here"
    return Verdict.GOOD, f"{', '.join(tests)} passed"
