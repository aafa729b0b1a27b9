"""Test names one character off a known one: reported as suspect, never a new test."""

from __future__ import annotations

import pytest

from nixvmd.results.record import RunRecord, SuspectName, TestResult, TestStatus
from nixvmd.results.suspect import console_slip, reconcile_names

PASS = TestStatus.PASS


def results_named(*names: str) -> list[TestResult]:
    return [TestResult(name, PASS) for name in names]


@pytest.mark.parametrize(
    ("seen", "known", "slip"),
    [
        # What host load did to nixvmd's console before: doubled, dropped, overwritten.
        ("calibratioon", "calibration", "a doubled 'o'"),
        ("kunit-resurce-test", "kunit-resource-test", "a dropped 'o'"),
        ("kunit-ressurce-test", "kunit-resource-test", "'o' overwritten by a second 's'"),
        ("inode_test__xtimestamp", "inode_test_xtimestamp", "a doubled '_'"),
        ("ttime_test", "time_test", "a doubled 't'"),
        ("time_tes", "time_test", "a dropped 't'"),
    ],
)
def test_a_slip_says_what_went_wrong(seen: str, known: str, slip: str) -> None:
    assert console_slip(seen, known) == slip


@pytest.mark.parametrize(
    ("seen", "known"),
    [
        ("list_test", "list_test"),  # the same name
        ("list_tests_x", "list_test"),  # two characters more
        ("lisx_test", "list_test"),  # a different letter, not a repeat of its neighbour
        ("list_tesst_a", "list_test_b"),  # two differences
        ("list_testa", "list_test"),  # an added letter that repeats no neighbour
    ],
)
def test_other_differences_are_no_slip(seen: str, known: str) -> None:
    assert console_slip(seen, known) is None


def test_a_garbled_name_keeps_the_previous_runs_name_with_a_note() -> None:
    previous = results_named("kunit-resource-test.alloc", "kunit-resource-test.free", "list.add")
    now = results_named("kunit-resurce-test.alloc", "kunit-resurce-test.free", "list.add")

    tests, suspects = reconcile_names(now, previous)

    assert [t.name for t in tests] == ["kunit-resource-test.alloc", "kunit-resource-test.free", "list.add"]
    assert "kunit-resurce-test.alloc" in tests[0].message
    assert [(s.seen, s.kept) for s in suspects] == [
        ("kunit-resurce-test.alloc", "kunit-resource-test.alloc"),
        ("kunit-resurce-test.free", "kunit-resource-test.free"),
    ]
    assert "a dropped 'o'" in suspects[0].note


def test_a_failure_keeps_its_own_message_and_status() -> None:
    previous = results_named("suite.case")
    now = [TestResult("suite.casse", TestStatus.FAIL, 0.5, "Expected 1 == 2")]

    (test,), _ = reconcile_names(now, previous)

    assert (test.name, test.status, test.duration_s) == ("suite.case", TestStatus.FAIL, 0.5)
    assert test.message.startswith("Expected 1 == 2\n")


def test_a_new_test_beside_all_the_old_ones_is_new() -> None:
    # Every name of the previous run is still there: the near-namesake is a test of its own.
    previous = results_named("suite.case")
    now = results_named("suite.case", "suite.casse")

    tests, suspects = reconcile_names(now, previous)

    assert [t.name for t in tests] == ["suite.case", "suite.casse"]
    assert suspects == []


def test_an_ambiguous_slip_renames_nothing() -> None:
    # "suite.abb" is "suite.ab" with a doubled 'b' and "suite.abc" with 'c' overwritten.
    previous = results_named("suite.ab", "suite.abc")
    now = results_named("suite.abb")

    tests, suspects = reconcile_names(now, previous)

    assert [t.name for t in tests] == ["suite.abb"]
    assert suspects == []


def test_one_known_name_takes_one_garbled_name() -> None:
    previous = results_named("suite.case")
    now = results_named("suite.casse", "suite.cse")

    tests, suspects = reconcile_names(now, previous)

    assert sorted(t.name for t in tests) == ["suite.case", "suite.cse"]
    assert len(suspects) == 1


def test_a_spelling_seen_in_two_runs_is_a_real_rename() -> None:
    # A typo fixed in the kernel looks like a slip once; the next run confirms it.
    first, _ = reconcile_names(results_named("suite.resource"), results_named("suite.ressource"))
    assert [t.name for t in first] == ["suite.ressource"]

    second, suspects = reconcile_names(
        results_named("suite.resource"), first, reported_before={"suite.resource"}
    )
    assert [t.name for t in second] == ["suite.resource"]
    assert suspects == []


def test_without_a_previous_run_nothing_changes() -> None:
    now = results_named("suite.casse")
    assert reconcile_names(now, None) == (now, [])


def test_suspect_lines_round_trip_through_run_json() -> None:
    record = RunRecord("r1", "kunit", "/k", "6.1", "direct", 0.0)
    record.suspect_lines = [SuspectName("a.bb", "a.b", "a doubled 'b'")]

    again = RunRecord.from_json(record.to_json())

    assert again.suspect_lines == record.suspect_lines
    assert record.to_json()["suspect_lines"] == [{"seen": "a.bb", "kept": "a.b", "note": "a doubled 'b'"}]
