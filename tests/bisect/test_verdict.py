"""A step's verdict: a failed build skips, the named tests judge, nixvmd's own failure is no verdict."""

from __future__ import annotations

import pytest

from nixvmd.bisect.record import Verdict
from nixvmd.bisect.verdict import classify
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus

T = "example.example_simple_test"


def _run(outcome: Outcome, **statuses: TestStatus) -> RunRecord:
    record = RunRecord("r1", "kunit-bisect", "/k", "6.1", "direct", 0.0, outcome=outcome, reason="why")
    record.tests = [TestResult(name.replace("__", "."), status) for name, status in statuses.items()]
    return record


def test_a_failed_build_is_skipped_whatever_else() -> None:
    assert classify(False, None, [T])[0] is Verdict.SKIP


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        (_run(Outcome.PASSED, example__example_simple_test=TestStatus.PASS), Verdict.GOOD),
        (_run(Outcome.FAILED, example__example_simple_test=TestStatus.FAIL), Verdict.BAD),
        (
            _run(Outcome.FAILED, example__example_simple_test=TestStatus.PASS, other__t=TestStatus.FAIL),
            Verdict.GOOD,
        ),
        (_run(Outcome.CRASHED), Verdict.BAD),
        (_run(Outcome.TIMEOUT, example__example_simple_test=TestStatus.PASS), Verdict.BAD),
        (_run(Outcome.PASSED, example__example_simple_test=TestStatus.SKIP), Verdict.SKIP),
        (_run(Outcome.PASSED, other__t=TestStatus.PASS), Verdict.SKIP),
        (_run(Outcome.ERROR, example__example_simple_test=TestStatus.FAIL), Verdict.ERROR),
        (_run(Outcome.CANCELLED), Verdict.ERROR),
    ],
)
def test_the_named_tests_judge_a_built_commit(record: RunRecord, verdict: Verdict) -> None:
    assert classify(True, record, [T])[0] is verdict


def test_a_failing_test_is_named_in_the_reason() -> None:
    verdict, reason = classify(True, _run(Outcome.FAILED, example__example_simple_test=TestStatus.ERROR), [T])
    assert verdict is Verdict.BAD and reason == f"{T} failed"


def test_nixvmds_own_failure_is_an_error_that_says_why() -> None:
    verdict, reason = classify(True, _run(Outcome.ERROR), [T])
    assert verdict is Verdict.ERROR and reason == "run r1 broke: why"


def test_without_named_tests_the_outcome_judges() -> None:
    assert classify(True, _run(Outcome.FAILED), [])[0] is Verdict.BAD
    assert classify(True, _run(Outcome.PASSED), [])[0] is Verdict.GOOD
