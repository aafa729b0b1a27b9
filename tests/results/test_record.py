"""The run record: a test's headline, and the failures a run summary names."""

from __future__ import annotations

from nixvmd.results.record import MAX_HEADLINE, SUMMARY_FAILURES, Outcome, RunRecord, TestResult, TestStatus

FAIL, ERROR, PASS = TestStatus.FAIL, TestStatus.ERROR, TestStatus.PASS


def record(tests: list[TestResult], regressions: tuple[str, ...] = ()) -> RunRecord:
    return RunRecord(
        "r1",
        "xfstests",
        "/k",
        "6.1.0",
        "direct",
        0.0,
        Outcome.FAILED,
        tests=tests,
        regressions=list(regressions),
    )


def test_the_headline_is_the_first_line_of_the_message_and_short() -> None:
    assert TestResult("t", FAIL, message="  why it failed \ndetails\nmore").headline == "why it failed"
    assert TestResult("t", PASS).headline == ""
    long = TestResult("t", FAIL, message="x" * 1000)
    assert len(long.headline) == MAX_HEADLINE and long.headline.endswith("…")


def test_the_summary_names_failures_with_their_headlines_regressions_first() -> None:
    tests = [
        TestResult("generic/001", PASS),
        TestResult("generic/002", FAIL, message="failed, exit status 1\nmore"),
        TestResult("generic/003", ERROR, message=""),
        TestResult("generic/004", FAIL, message="output mismatch at line 2: +oops\n--- a\n+++ b"),
    ]

    summary = record(tests, regressions=("generic/004",)).summary()

    assert summary["failures"] == [
        {"name": "generic/004", "headline": "output mismatch at line 2: +oops"},
        {"name": "generic/002", "headline": "failed, exit status 1"},
        {"name": "generic/003", "headline": ""},
    ]
    assert summary["failed"] == 3


def test_the_summary_keeps_its_documented_keys_and_bounds_the_failures() -> None:
    tests = [TestResult(f"t/{n:03}", FAIL, message=f"why {n}") for n in range(40)]

    summary = record(tests).summary()

    assert len(summary["failures"]) == SUMMARY_FAILURES
    documented = {"id", "outcome", "kernel_version", "passed", "failed", "skipped", "regressions", "fixes"}
    assert documented | {"duration_s"} <= set(summary)
    assert RunRecord.from_json(record(tests).to_json()) == record(tests)
