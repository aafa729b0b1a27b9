"""A run's first regression, judged verdict by verdict as compare judges the whole run."""

from __future__ import annotations

from pathlib import Path

from nixvmd.results.baseline import Baseline
from nixvmd.results.compare import compare_runs
from nixvmd.results.first_regression import FirstRegression, RegressionWatch
from nixvmd.results.history import earlier_results, early_for, recent_runs
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.results.store import RunStore

PASS, FAIL, ERROR, SKIP = TestStatus.PASS, TestStatus.FAIL, TestStatus.ERROR, TestStatus.SKIP
PREVIOUS = [
    TestResult("generic/001", PASS),
    TestResult("generic/002", PASS),
    TestResult("generic/005", FAIL),
    TestResult("generic/475", PASS),
    TestResult("generic/003", SKIP),
]


def test_the_first_failure_that_passed_before_is_the_first_regression_and_only_it() -> None:
    watch = RegressionWatch(PREVIOUS, Baseline.parse("generic/475\n"), "6.1.0")
    verdicts = [
        TestResult("generic/005", FAIL),  # failing before too: still failing
        TestResult("generic/475", FAIL, message="known"),  # the baseline expects it
        TestResult("generic/001", PASS),
        TestResult("generic/003", FAIL, message="output mismatch at line 2: -a +b\nmore"),
        TestResult("generic/002", ERROR),  # a second regression: news at the run's end
    ]
    seen = [watch.see(result) for result in verdicts]
    assert seen == [False, False, False, True, False]
    assert watch.first is verdicts[3]
    # The same rule as the run's end: what compare calls regressions, in the same order.
    assert compare_runs(verdicts, PREVIOUS, Baseline.parse("generic/475\n"), "6.1.0").regressions == (
        "generic/003",
        "generic/002",
    )


def test_a_new_test_failing_is_a_regression_and_so_is_any_failure_of_a_first_run() -> None:
    assert RegressionWatch(PREVIOUS, None, "6.1.0").see(TestResult("generic/999", FAIL))
    assert RegressionWatch(None, None, "6.1.0").see(TestResult("generic/001", ERROR))
    assert not RegressionWatch(None, None, "6.1.0").see(TestResult("generic/001", SKIP))


def test_the_announcement_carries_run_test_headline_and_build() -> None:
    found = FirstRegression("r2", "generic/002", "output mismatch at line 2", "6.1.0 #7 a1b2c3d")
    assert found.to_json() == {
        "run_id": "r2",
        "test": "generic/002",
        "headline": "output mismatch at line 2",
        "build": "6.1.0 #7 a1b2c3d",
    }


def _finished(
    store: RunStore, at: float, outcome: Outcome, *tests: TestResult, fixes: tuple[str, ...] = ()
) -> RunRecord:
    run_id, _ = store.new_run_dir(at)
    record = RunRecord(run_id, "xfstests", "/k/bzImage", "6.1.0", "direct", at, outcome=outcome)
    record.tests = list(tests)
    record.fixes = list(fixes)
    record.finished_at = at + 1
    store.save(record)
    return record


def test_what_runs_first_comes_from_the_last_verdict_and_the_fixes_of_the_last_runs(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _finished(store, 1000, Outcome.PASSED, TestResult("generic/010", PASS), fixes=("generic/010",))
    for at in range(2000, 7000, 1000):  # five runs since: the fix of the first is no longer recent
        _finished(store, at, Outcome.PASSED, TestResult("generic/001", PASS))
    _finished(store, 7000, Outcome.FAILED, TestResult("generic/002", FAIL), fixes=("generic/020",))
    fixed = _finished(store, 8000, Outcome.PASSED, TestResult("generic/002", PASS), fixes=("generic/002",))
    last = _finished(
        store, 9000, Outcome.FAILED, TestResult("generic/005", FAIL), TestResult("generic/001", PASS)
    )
    _finished(store, 9500, Outcome.ERROR, TestResult("generic/007", ERROR))  # says nothing of the kernel
    _finished(store, 9600, Outcome.CANCELLED)
    run_id, _ = store.new_run_dir(10000)
    new = RunRecord(run_id, "xfstests", "/k/bzImage", "6.1.0", "direct", 10000)

    assert [r.id for r in recent_runs(store, new, 2)] == [last.id, fixed.id]
    previous = earlier_results(store, new)
    assert previous is not None and [t.name for t in previous] == ["generic/005", "generic/001"]
    assert early_for(store, new, previous) == ["generic/005", "generic/002", "generic/020"]
