"""The run record: a test's headline, the failures a run summary names, builds named as a person
tells them apart, and run.json round trips."""

from __future__ import annotations

from typing import Any

from nixvmd.results.record import (
    MAX_HEADLINE,
    SUMMARY_FAILURES,
    Outcome,
    RunRecord,
    TestResult,
    TestStatus,
    build_label,
)

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


def test_the_build_label_names_release_build_number_and_commit() -> None:
    commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    assert build_label("6.1.192", "#7", {"commit": commit, "dirty": False}) == "6.1.192 #7 a1b2c3d"
    assert build_label("6.1.192", "#7", {"commit": commit, "dirty": True}) == "6.1.192 #7 a1b2c3d-dirty"
    assert build_label("6.1.192", "#7") == "6.1.192 #7"
    assert build_label("6.1.192") == "6.1.192"


def test_build_and_git_are_in_the_summary_and_survive_run_json() -> None:
    record = RunRecord("r1", "kunit", "/k/bzImage", "6.1.192", "direct", 1.0, outcome=Outcome.PASSED)
    record.kernel_build = "#7"
    record.git = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True}
    record.tests = [TestResult("a.b", TestStatus.FAIL)]
    record.known_failures = ["a.b"]
    data = record.to_json()
    assert data["build"] == "6.1.192 #7 0123456-dirty"
    assert (data["kernel_build"], data["git"]) == ("#7", record.git)
    assert record.summary()["known_failures"] == ["a.b"]
    again = RunRecord.from_json(data)
    assert (again.kernel_build, again.git, again.build) == ("#7", record.git, data["build"])


def test_an_older_run_json_has_no_build_and_still_loads() -> None:
    old: dict[str, Any] = {"id": "r0", "suite": "command", "kernel_path": "/k", "kernel_version": "6.1.0"}
    old |= {"backend": "direct", "started_at": 1.0, "outcome": "passed"}
    record = RunRecord.from_json(old)
    assert (record.kernel_build, record.git, record.build) == ("", None, "6.1.0")
