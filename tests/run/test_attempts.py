"""Crash resume's pure decisions: the stopped test, its verdict, what is left, the merged outcome."""

from __future__ import annotations

from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.results.record import Attempt, Outcome, RunRecord, Splat, TestResult, TestStatus
from nixvmd.run.attempts import (
    EXCERPT_AFTER,
    EXCERPT_BEFORE,
    console_excerpt,
    merged_outcome,
    not_run,
    relocated,
    remaining,
    resume_note,
    stop_anchor,
    stop_verdict,
    stopped_in,
    why_not_run,
    with_verdict,
)
from nixvmd.run.resume import known_tests, resumable

PANIC = "Kernel panic - not syncing: sysrq triggered crash"
UNFINISHED = "did not finish: the output ended while it ran (kernel crash, hang or timeout?)"


def _part(outcome: Outcome, reason: str, tests: list[TestResult], splats: list[Splat]) -> RunRecord:
    record = RunRecord("r1", "xfstests", "/k", "6.1", "direct", 0.0, outcome=outcome, reason=reason)
    record.tests, record.splats = tests, splats
    return record


def _pass(name: str, *artefacts: str) -> TestResult:
    return TestResult(name, TestStatus.PASS, 1.0, "", artefacts)


def test_the_test_running_when_the_guest_crashed_or_hung_is_the_one_it_stopped_in() -> None:
    assert stopped_in(Outcome.CRASHED, "crash/001") == "crash/001"
    assert stopped_in(Outcome.TIMEOUT, "hang/001") == "hang/001"


def test_no_test_is_blamed_for_a_crash_between_tests_nor_for_an_ending_that_is_no_crash() -> None:
    assert stopped_in(Outcome.CRASHED, None) is None
    assert stopped_in(Outcome.ERROR, "generic/001") is None  # the machinery broke: never the test
    assert stopped_in(Outcome.FAILED, "generic/002") is None
    assert stopped_in(Outcome.CANCELLED, "generic/001") is None


def test_what_remains_is_the_tests_with_no_verdict_but_the_stopped_one_in_list_order() -> None:
    tests = ("generic/001", "crash/001", "generic/002", "generic/003")
    finished = [_pass("generic/001"), TestResult("crash/001", TestStatus.ERROR, None, UNFINISHED)]
    assert remaining(tests, finished, "crash/001") == ("generic/002", "generic/003")


def test_remaining_goes_by_verdict_not_position_so_check_may_order_its_tests_its_own_way() -> None:
    tests = ("generic/002", "generic/001", "crash/001")
    assert remaining(tests, [_pass("generic/001")], "crash/001") == ("generic/002",)


def test_remaining_takes_a_test_listed_twice_once_and_reads_section_qualified_names() -> None:
    tests = ("generic/001", "crash/001", "generic/001", "generic/003")
    assert remaining(tests, [_pass("xfs:generic/001")], "crash/001") == ("generic/003",)


def test_when_every_test_left_crashes_each_attempt_still_leaves_one_fewer() -> None:
    left: tuple[str, ...] = ("crash/001", "crash/002", "crash/003")
    lengths = []
    while left:
        left = remaining(left, [], left[0])  # each VM dies in its first test, with no verdict of its own
        lengths.append(len(left))
    assert lengths == [2, 1, 0]


def test_the_stopped_test_gets_crashed_with_the_panic_its_splats_and_the_console_around_them() -> None:
    console = [f"line {i}" for i in range(100)]
    console[60] = f"[   12.3] {PANIC}"
    splat = Splat("panic", f"[   12.3] {PANIC}", "crash/001")
    other = Splat("warning", "WARNING: CPU: 0 at fs/xfs/x.c:1", "generic/001")
    unfinished = TestResult("crash/001", TestStatus.ERROR, None, UNFINISHED, ("results/x.full",), "xfs")
    part = _part(
        Outcome.CRASHED, f"kernel panic: {PANIC}", [_pass("generic/001"), unfinished], [other, splat]
    )
    excerpt = console_excerpt(console, stop_anchor(part, "crash/001"))
    verdict = stop_verdict(part, "crash/001", excerpt, "resume/1/console.log")
    assert verdict.status is TestStatus.CRASHED
    assert verdict.headline == f"kernel panic: {PANIC}"
    assert f"panic: [   12.3] {PANIC}" in verdict.message
    assert "WARNING" not in verdict.message  # another test's splat is that test's
    assert "console (resume/1/console.log):" in verdict.message
    assert excerpt == tuple(console[60 - EXCERPT_BEFORE : 60 + EXCERPT_AFTER])
    assert verdict.artefacts == ("results/x.full", "resume/1/console.log")
    assert (verdict.name, verdict.collection) == ("crash/001", "xfs")


def test_a_hung_test_gets_timeout_with_the_hang_limit_and_the_console_tail() -> None:
    reason = "test hang/001 hung: still running after 25s (no previous duration; ...)"
    part = _part(Outcome.TIMEOUT, reason, [], [])
    console = [f"line {i}" for i in range(100)]
    excerpt = console_excerpt(console, stop_anchor(part, "hang/001"))
    verdict = stop_verdict(part, "hang/001", excerpt, "console.log")
    assert verdict.status is TestStatus.TIMEOUT
    assert verdict.headline == reason
    assert excerpt == tuple(console[-EXCERPT_AFTER:])
    assert verdict.artefacts == ("console.log",)


def test_the_verdict_takes_the_place_of_the_suites_did_not_finish_or_comes_last() -> None:
    verdict = TestResult("crash/001", TestStatus.CRASHED, None, "kernel panic")
    tests = [_pass("generic/001"), TestResult("crash/001", TestStatus.ERROR, None, UNFINISHED)]
    assert with_verdict(tests, verdict) == [tests[0], verdict]
    assert with_verdict([tests[0]], verdict) == [tests[0], verdict]


def test_a_later_attempts_artefacts_are_found_under_its_directory() -> None:
    moved = relocated([_pass("generic/001", "results/xfs/check.log", "/abs/x")], "resume/2")
    assert moved[0].artefacts == ("resume/2/results/xfs/check.log", "/abs/x")
    assert relocated([_pass("generic/001", "output.log")], "")[0].artefacts == ("output.log",)


def test_tests_never_reached_are_recorded_not_run_which_is_no_failure() -> None:
    (test,) = not_run(["generic/001"], "suite.resume_limit (1) reached after the guest stopped in crash/002")
    assert test.status is TestStatus.SKIP and not test.status.failing
    assert test.headline.startswith("not run: suite.resume_limit (1) reached")


def test_why_not_run_names_the_limit_or_the_crash_outside_any_test() -> None:
    stopped = Attempt(
        ("crash/002", "generic/001"), Outcome.CRASHED, "kernel panic: x", "resume/1", "crash/002"
    )
    assert why_not_run(stopped, 1) == "suite.resume_limit (1) reached after the guest stopped in crash/002"
    between = Attempt(("generic/001",), Outcome.CRASHED, "kernel panic: x")
    assert why_not_run(between, 3) == "the guest crashed outside any test: kernel panic: x"


def test_the_resume_note_says_where_the_guest_stopped_and_how_many_tests_go_on() -> None:
    attempt = Attempt(("crash/001", "a/1", "a/2", "a/3"), Outcome.CRASHED, "kernel panic: x", "", "crash/001")
    assert resume_note(attempt, 3, 1, 3) == "guest crashed in crash/001; resuming 3 tests in a fresh VM (1/3)"
    hung = Attempt(("hang/001", "a/1"), Outcome.TIMEOUT, "test hang/001 hung", "", "hang/001")
    assert resume_note(hung, 1, 2, 2) == "guest hung in hang/001; resuming 1 test in a fresh VM (2/2)"


def test_the_run_stays_crashed_with_the_first_crash_naming_its_test_whatever_the_later_vms_did() -> None:
    attempts = [
        Attempt(("g/1", "crash/001", "g/2"), Outcome.CRASHED, "kernel panic: P", "", "crash/001"),
        Attempt(("g/2",), Outcome.PASSED, "", "resume/1"),
    ]
    assert merged_outcome(attempts) == (Outcome.CRASHED, "kernel panic: P (in crash/001)")
    hung = [Attempt(("hang/001",), Outcome.TIMEOUT, "test hang/001 hung: ...", "", "hang/001"), *attempts]
    assert merged_outcome(hung) == (Outcome.TIMEOUT, "test hang/001 hung: ...")


def test_a_later_vm_that_broke_makes_the_run_error_never_the_kernels_fault() -> None:
    attempts = [
        Attempt(("crash/001", "g/2"), Outcome.CRASHED, "kernel panic: P", "", "crash/001"),
        Attempt(("g/2",), Outcome.ERROR, "QEMU did not come up (exit status 1): ...", "resume/1"),
    ]
    assert merged_outcome(attempts) == (
        Outcome.ERROR,
        "QEMU did not come up (exit status 1): ... (resume attempt 1)",
    )


def test_a_cancel_in_any_vm_cancels_the_run_and_one_vm_keeps_its_own_outcome() -> None:
    attempts = [
        Attempt(("crash/001", "g/2"), Outcome.CRASHED, "kernel panic: P", "", "crash/001"),
        Attempt(("g/2",), Outcome.CANCELLED, "cancelled", "resume/1"),
    ]
    assert merged_outcome(attempts) == (Outcome.CANCELLED, "cancelled")
    assert merged_outcome([Attempt(("g/2",), Outcome.FAILED, "the suite exited with status 1")]) == (
        Outcome.FAILED,
        "the suite exited with status 1",
    )


def test_attempts_round_trip_through_run_json() -> None:
    record = RunRecord("r1", "xfstests", "/k", "6.1", "direct", 0.0, outcome=Outcome.CRASHED)
    record.attempts = [Attempt(("a/1", "crash/001"), Outcome.CRASHED, "kernel panic: P", "", "crash/001")]
    data = record.to_json()
    assert data["attempts"] == [
        {
            "tests": ["a/1", "crash/001"],
            "outcome": "crashed",
            "reason": "kernel panic: P",
            "dir": "",
            "stopped_in": "crash/001",
        }
    ]
    assert RunRecord.from_json(data).attempts == record.attempts
    assert "attempts" not in RunRecord("r2", "command", "/k", "6.1", "direct", 0.0).to_json()


def _config(text: str) -> Config:
    return parse_config(text, name="test.toml", base=Path("/"))


STANDIN = Path(__file__).parents[1] / "fixtures" / "fstests"


def _xfstests(
    args: tuple[str, ...], sections: tuple[str, ...] = ("xfs",), tree: Path | None = None
) -> Config:
    rows = "".join(f'[[xfstests.sections]]\nname = "{s}"\n' for s in sections)
    listed = ", ".join(f'"{a}"' for a in args)
    where = f'dir = "{tree}"\n' if tree is not None else ""
    return _config(f'[suite]\nkind = "xfstests"\n[xfstests]\n{where}args = [{listed}]\n{rows}')


def test_the_test_list_is_known_when_the_fstests_args_name_every_test() -> None:
    assert known_tests(_xfstests(("generic/001", "crash/001", "generic/001"))) == ("generic/001", "crash/001")
    assert known_tests(_xfstests(("-g", "quick"))) == ()  # no tree here: check expands the group


def test_the_test_list_is_known_from_the_trees_group_lists_in_checks_order() -> None:
    assert known_tests(_xfstests(("-g", "quick"), tree=STANDIN)) == (
        "generic/001",
        "generic/002",
        "generic/003",
    )
    assert known_tests(_xfstests(("generic/002", "crash/001"), tree=STANDIN)) == ("crash/001", "generic/002")
    exact = _xfstests(("--exact-order", "generic/002", "crash/001"), tree=STANDIN)
    assert known_tests(exact) == ("generic/002", "crash/001")
    assert known_tests(_xfstests(("-g", "no-such-group"), tree=STANDIN)) == ()  # check says so in the guest
    assert known_tests(_config("")) == ()  # a command suite is one test


def test_fstests_over_several_sections_does_not_resume_yet() -> None:
    assert resumable(_xfstests(("generic/001",)))
    assert not resumable(_xfstests(("generic/001",), ("xfs", "ext4")))
    assert known_tests(_xfstests(("generic/001",), ("xfs", "ext4"))) == ()
