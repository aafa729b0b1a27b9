"""Comparing a run with the previous one and the baseline: what regressed, what got fixed.

For each test of the new run, by name (a name seen twice keeps its worst verdict):

- failing now (fail or error) and expected by the baseline on this kernel:
  a known failure, never a regression;
- failing now, not in the baseline, and flaky (it passed when rerun): flaky;
- failing now and failing in the previous run too: still failing;
- failing now otherwise, a regression: it passed or was skipped before, or it
  was never seen before (a new test, or the very first run) — an unexplained
  failure is news the user wants; `nixvmctl baseline accept` silences it;
- passing now and failing before: a fix;
- skipped now and run (not skipped) before: a new skip. A test seen for the
  first time is never a new skip.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from nixvmd.results.baseline import Baseline
from nixvmd.results.record import RunRecord, TestResult, TestStatus

_RANK = {TestStatus.SKIP: 0, TestStatus.PASS: 1, TestStatus.FAIL: 2, TestStatus.ERROR: 3}
_FAILING = (TestStatus.FAIL, TestStatus.ERROR)


@dataclass(frozen=True)
class Comparison:
    """The test names in each category, in the order of the new run."""

    regressions: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    known_failures: tuple[str, ...] = ()
    new_skips: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    flaky: tuple[str, ...] = ()


@dataclass(frozen=True)
class RerunVerdict:
    """Failures sorted by what their reruns did."""

    flaky: tuple[str, ...] = ()
    """Passed in at least one rerun."""
    persistent: tuple[str, ...] = ()
    """Failed (or errored) in every rerun."""
    not_rerun: tuple[str, ...] = ()
    """No rerun says anything: never rerun, or only skipped."""


def worst_by_name(tests: Iterable[TestResult]) -> dict[str, TestStatus]:
    """Each test's status by name; a name seen twice keeps its worst verdict."""
    statuses: dict[str, TestStatus] = {}
    for test in tests:
        seen = statuses.get(test.name)
        if seen is None or _RANK[test.status] > _RANK[seen]:
            statuses[test.name] = test.status
    return statuses


def compare_runs(
    current: Sequence[TestResult],
    previous: Sequence[TestResult] | None,
    baseline: Baseline | None,
    kernel_version: str,
    flaky: Collection[str] = (),
) -> Comparison:
    """Classify the new run's tests against the previous run of the same suite and the baseline.

    `previous` is None when there is no earlier run; `flaky` names failures
    that passed on rerun (see `classify_reruns`).
    """
    now = worst_by_name(current)
    before = worst_by_name(previous or ())
    known = baseline or Baseline()
    result: dict[str, list[str]] = {
        "regressions": [],
        "fixes": [],
        "known_failures": [],
        "new_skips": [],
        "still_failing": [],
        "flaky": [],
    }
    for name, status in now.items():
        category = category_of(name, status, before.get(name), known, kernel_version, flaky)
        if category is not None:
            result[category].append(name)
    return Comparison(**{key: tuple(names) for key, names in result.items()})


def category_of(
    name: str,
    status: TestStatus,
    was: TestStatus | None,
    baseline: Baseline,
    kernel_version: str,
    flaky: Collection[str] = (),
) -> str | None:
    """Which `Comparison` field test `name` belongs to (None: nothing to say), one test at a time.

    `was` is its status in the previous run (None: not seen there). Used by `compare_runs`
    for a whole run and by `RegressionWatch` for each verdict as it arrives.
    """
    if status in _FAILING:
        if baseline.applies(name, kernel_version):
            return "known_failures"
        if name in flaky:
            return "flaky"
        if was in _FAILING:
            return "still_failing"
        return "regressions"
    if status is TestStatus.PASS and was in _FAILING:
        return "fixes"
    if status is TestStatus.SKIP and was is not None and was is not TestStatus.SKIP:
        return "new_skips"
    return None


def classify_reruns(failed: Iterable[str], reruns: Iterable[Iterable[TestResult]]) -> RerunVerdict:
    """Which of the `failed` tests are flaky, given their reruns' results (one list per rerun)."""
    outcomes: dict[str, set[TestStatus]] = {name: set() for name in failed}
    for rerun in reruns:
        for test in rerun:
            if test.name in outcomes:
                outcomes[test.name].add(test.status)
    flaky, persistent, not_rerun = [], [], []
    for name, statuses in outcomes.items():
        if TestStatus.PASS in statuses:
            flaky.append(name)
        elif statuses & set(_FAILING):
            persistent.append(name)
        else:
            not_rerun.append(name)
    return RerunVerdict(tuple(flaky), tuple(persistent), tuple(not_rerun))


def annotate(
    record: RunRecord,
    previous: RunRecord | Sequence[TestResult] | None,
    baseline: Baseline | None,
    flaky: Collection[str] = (),
) -> Comparison:
    """Fill `record`'s regressions, fixes, known failures, new skips and flaky tests.

    `previous` is the run to compare with, or the earlier results test by test
    (`results.history.earlier_results`).
    """
    comparison = compare_runs(
        record.tests,
        previous.tests if isinstance(previous, RunRecord) else previous,
        baseline,
        record.kernel_version,
        flaky,
    )
    record.regressions = list(comparison.regressions)
    record.fixes = list(comparison.fixes)
    record.known_failures = list(comparison.known_failures)
    record.new_skips = list(comparison.new_skips)
    record.flaky = list(comparison.flaky)
    return comparison
