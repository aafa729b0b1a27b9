"""The run record: builds named as a person tells them apart, and run.json round trips."""

from __future__ import annotations

from typing import Any

from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus, build_label


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
