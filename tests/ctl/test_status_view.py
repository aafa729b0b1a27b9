"""`nixvmctl status` and `watch` while a run goes: the count without a total, a line per shard."""

from __future__ import annotations

from typing import Any

from nixvmd.ctl.format import followed_line, format_status, format_watch


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


SHARDED = {
    "run_id": "r2",
    "phase": "testing",
    "test": None,
    "done": 3,
    "total": 6,
    "eta_s": 41.6,
    "started_at": 1000.0,
    "shards": [
        {"index": 0, "test": "generic/002", "done": 1, "total": 3, "state": "testing"},
        {"index": 1, "test": None, "done": 2, "total": 3, "state": "crashed"},
    ],
}


def test_a_run_with_shards_shows_one_line_per_shard_and_the_runs_eta() -> None:
    text = format_status(status(SHARDED))

    assert "current:  r2 testing 3/6, ~42s left\n" in text
    assert "          shard 0: testing generic/002 1/3\n" in text
    assert "          shard 1: crashed 2/3\n" in text


def test_watch_shows_a_progress_bar_per_shard() -> None:
    lines = format_watch(status(SHARDED), [], 1010.0, width=100)

    assert "run:      r2 testing (10s), ~42s left" in lines
    shards = [line for line in lines if line.startswith("  shard ")]
    assert shards == [
        f"  shard 0: testing generic/002 [{'#' * 7}{'.' * 13}] 1/3",
        f"  shard 1: crashed [{'#' * 13}{'.' * 7}] 2/3",
    ]


def test_a_run_without_shards_shows_no_shard_lines() -> None:
    one = {"run_id": "r1", "phase": "testing", "test": "generic/002", "done": 1, "total": 3, "eta_s": 9.0}

    assert "shard" not in format_status(status(one))
    assert not any("shard" in line for line in format_watch(status(one), [], 0.0))


def test_logs_follow_prefixes_a_shards_console_lines_with_the_shard() -> None:
    assert followed_line({"event": "console", "line": "run fstests generic/001", "shard": 1}) == (
        "console| [shard 1] run fstests generic/001"
    )
    assert followed_line({"event": "console", "line": "Linux version 6.1"}) == "console| Linux version 6.1"
    assert followed_line({"event": "state", "state": "testing"}) is None


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


def test_status_and_watch_say_why_the_run_started() -> None:
    why = "tests/generic/750.out changed → generic/750"
    current = {"run_id": "r1", "phase": "booting", "test": None, "done": 0, "total": None, "reason": why}

    assert f"current:  r1 booting\n          why: {why}\n" in format_status(status(current))
    assert f"          why: {why}" in format_watch(status(current), [], now=0.0)


def test_a_run_under_gdb_shows_the_command_to_attach() -> None:
    gdb = {"target": "/tmp/s/gdb", "mode": "wait", "command": "gdb /l/vmlinux -ex 'target remote /tmp/s/gdb'"}
    current = {"run_id": "r1", "phase": "waiting for gdb", "test": None, "done": 0, "total": None, "gdb": gdb}
    text = format_status(status(current))

    assert "current:  r1 waiting for gdb\n" in text
    assert "gdb:      gdb /l/vmlinux -ex 'target remote /tmp/s/gdb'" in text.splitlines()


def test_a_test_edit_waiting_for_the_full_run_shows_as_queued() -> None:
    current = {"run_id": "r1", "phase": "testing", "test": "generic/013", "done": 12, "total": 600}
    why = "tests/generic/001.out changed → generic/001"
    waiting = status(current) | {"queued": {"reason": why, "tests": ["generic/001"]}}

    assert f"queued:   after this run: {why}" in format_status(waiting).splitlines()
    assert "queued" not in format_status(status(current))
