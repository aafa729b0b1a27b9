"""Comparing runs: regressions, fixes, known failures, new skips, flaky tests."""

from __future__ import annotations

from nixvmd.results.baseline import Baseline
from nixvmd.results.compare import Comparison, RerunVerdict, annotate, classify_reruns, compare_runs
from nixvmd.results.record import RunRecord, TestResult, TestStatus

PASS, FAIL, SKIP, ERROR = TestStatus.PASS, TestStatus.FAIL, TestStatus.SKIP, TestStatus.ERROR


def run(**statuses: TestStatus) -> list[TestResult]:
    return [TestResult(name.replace("_", "/"), status) for name, status in statuses.items()]


def test_each_category() -> None:
    previous = run(generic_001=PASS, generic_002=FAIL, generic_003=PASS, generic_004=FAIL, generic_005=SKIP)
    current = run(
        generic_001=FAIL,
        generic_002=PASS,
        generic_003=SKIP,
        generic_004=ERROR,
        generic_005=FAIL,
        generic_006=FAIL,
        generic_007=PASS,
    )

    assert compare_runs(current, previous, Baseline(), "6.1.0") == Comparison(
        regressions=("generic/001", "generic/005", "generic/006"),
        fixes=("generic/002",),
        new_skips=("generic/003",),
        still_failing=("generic/004",),
    )


def test_baseline_failures_are_known_not_regressions_on_matching_kernels() -> None:
    baseline = Baseline.parse("generic/001  # flaky [< 6.6]\n")
    previous = run(generic_001=PASS)
    current = run(generic_001=FAIL)

    assert compare_runs(current, previous, baseline, "6.1.0").known_failures == ("generic/001",)
    assert compare_runs(current, previous, baseline, "6.6.0").regressions == ("generic/001",)


def test_first_run_every_unexplained_failure_is_a_regression_and_nothing_is_a_new_skip() -> None:
    current = run(generic_001=FAIL, generic_002=SKIP, generic_003=PASS)

    assert compare_runs(current, None, None, "6.1.0") == Comparison(regressions=("generic/001",))


def test_flaky_failures_are_set_apart() -> None:
    result = compare_runs(run(generic_001=FAIL), run(generic_001=PASS), None, "6.1.0", flaky={"generic/001"})

    assert result == Comparison(flaky=("generic/001",))


def test_a_test_listed_twice_counts_with_its_worst_verdict() -> None:
    current = [TestResult("generic/001", PASS), TestResult("generic/001", FAIL)]

    assert compare_runs(current, run(generic_001=PASS), None, "6.1.0").regressions == ("generic/001",)


def test_reruns_tell_flaky_from_persistent_failures() -> None:
    reruns = [
        run(generic_001=PASS, generic_002=FAIL, generic_004=SKIP),
        run(generic_001=FAIL, generic_002=ERROR, generic_009=PASS),
    ]

    assert classify_reruns(
        ["generic/001", "generic/002", "generic/003", "generic/004"], reruns
    ) == RerunVerdict(
        flaky=("generic/001",),
        persistent=("generic/002",),
        not_rerun=("generic/003", "generic/004"),
    )


def test_annotate_fills_the_record_for_run_json() -> None:
    def record(run_id: str, statuses: dict[str, TestStatus]) -> RunRecord:
        rec = RunRecord(run_id, "xfstests", "/k", "6.1.0", "direct", 0.0)
        rec.tests = [TestResult(name, status) for name, status in statuses.items()]
        return rec

    before = record("a", {"generic/001": TestStatus.PASS, "generic/002": TestStatus.FAIL})
    now = record(
        "b", {"generic/001": TestStatus.FAIL, "generic/002": TestStatus.PASS, "generic/003": TestStatus.FAIL}
    )
    known = Baseline.parse("generic/003  # known\n")
    annotate(now, before, known)
    assert now.regressions == ["generic/001"]
    assert now.fixes == ["generic/002"]
    assert now.known_failures == ["generic/003"]
    assert now.summary()["regressions"] == ["generic/001"]
