"""`nixvmctl status` while a run goes: the count shows even when the suite has no total."""

from __future__ import annotations

from typing import Any

from nixvmd.ctl.format import format_status, format_watch


def status(current: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "state": "testing",
        "kernel": None,
        "image": {"backend": "direct"},
        "current": current,
        "last_run": None,
    }


def test_a_kunit_run_shows_its_suite_and_count_without_a_total() -> None:
    text = format_status(
        status({"run_id": "r1", "phase": "testing", "test": "list-kunit-test", "done": 8, "total": None})
    )

    assert "current:  r1 testing list-kunit-test 8 done" in text


def test_a_run_with_a_total_shows_done_of_total() -> None:
    text = format_status(
        status({"run_id": "r1", "phase": "testing", "test": "generic/002", "done": 1, "total": 3})
    )

    assert "current:  r1 testing generic/002 1/3" in text


def test_a_boot_with_nothing_counted_yet_shows_only_the_phase() -> None:
    text = format_status(status({"run_id": "r1", "phase": "booting", "test": None, "done": 0, "total": None}))

    assert "current:  r1 booting\n" in text


def test_a_runs_first_regression_shows_under_it_while_it_goes_on() -> None:
    found = {
        "run_id": "r1",
        "test": "generic/002",
        "headline": "output mismatch at line 2",
        "build": "6.1 #1",
    }
    text = format_status(
        status(
            {
                "run_id": "r1",
                "phase": "testing",
                "test": "hang/001",
                "done": 2,
                "total": 3,
                "first_regression": found,
            }
        )
    )

    assert (
        "current:  r1 testing hang/001 2/3\n"
        "          first regression: generic/002: output mismatch at line 2" in text
    )


def test_watch_shows_the_first_regression_under_the_progress() -> None:
    found = {"run_id": "r1", "test": "generic/002", "headline": "output mismatch", "build": "6.1 #1"}
    current = {"run_id": "r1", "phase": "testing", "test": "hang/001", "done": 2, "total": 3}
    lines = format_watch(status({**current, "first_regression": found}), [], now=0.0)
    assert lines[lines.index(next(line for line in lines if line.startswith("tests:"))) + 1] == (
        "          first regression: generic/002: output mismatch"
    )
    assert not any("first regression" in line for line in format_watch(status(current), [], now=0.0))
