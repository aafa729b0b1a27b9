"""What the next run covers and why it starts: a tree change narrows it, anything else runs in full."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import OnChange
from nixvmd.daemon.fstests_watch import next_run, queued, taken_since
from nixvmd.daemon.loop import Daemon
from nixvmd.plan.planner import Changes
from nixvmd.suite.xfstests.tree import classify

STANDIN = Path(__file__).parents[1] / "fixtures" / "fstests"
TREE = Changes(fstests=True)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    tree = tmp_path / "fstests"
    shutil.copytree(STANDIN, tree)
    text = f"""
[image]
share_host_root = true
[suite]
kind = "xfstests"
[xfstests]
dir = "{tree}"
args = ["-g", "quick"]
[daemon]
state_dir = "{tmp_path / "state"}"
socket = "{tmp_path / "ctl.sock"}"
"""
    made = Daemon(parse_config(text, name="nixvmd.toml", base=tmp_path), None)
    yield made
    made.close()


def settled(daemon: Daemon, *paths: str) -> None:
    change = classify(paths, OnChange.CHANGED)
    daemon.fstests.decided = change if daemon.fstests.decided is None else daemon.fstests.decided | change


def test_a_test_edit_narrows_the_run_to_its_tests(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out", "tests/generic/004")

    assert next_run(daemon, TREE, cancelled=False) == (
        ("generic/001", "generic/004"),
        "tests/generic/001.out, tests/generic/004 changed → generic/001, generic/004",
    )
    assert daemon.fstests.decided is None


def test_fstests_itself_runs_the_configured_set(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out")
    settled(daemon, "common/rc")

    assert next_run(daemon, TREE, cancelled=False) == ((), "common/rc, tests/generic/001.out changed")


def test_a_narrowed_run_cancelled_by_another_edit_is_run_again_with_it(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out")
    next_run(daemon, TREE, cancelled=False)
    settled(daemon, "tests/generic/004.out")

    assert next_run(daemon, TREE, cancelled=True)[0] == ("generic/001", "generic/004")


def test_a_full_run_cancelled_by_a_test_edit_starts_again_in_full(daemon: Daemon) -> None:
    next_run(daemon, Changes(kernel=True), cancelled=False)
    settled(daemon, "tests/generic/001.out")

    assert next_run(daemon, TREE, cancelled=True) == (
        (),
        "tests/generic/001.out changed → generic/001; in full, as the run it cancelled",
    )


def test_a_new_kernel_runs_in_full_and_takes_the_tree_change_with_it(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out")

    assert next_run(daemon, Changes(kernel=True), cancelled=False) == ((), "new kernel")
    assert daemon.fstests.decided is None


def test_a_requested_run_keeps_its_tests_and_says_so(daemon: Daemon) -> None:
    daemon.next_tests = ("generic/002",)

    assert next_run(daemon, Changes(requested=True), cancelled=False) == (("generic/002",), "requested")
    assert next_run(daemon, Changes(config_runtime=True), cancelled=False) == ((), "config changed")


def test_a_run_narrowed_by_request_leaves_the_tree_change_waiting(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out")
    daemon.after_run = TREE
    daemon.next_tests = ("generic/002",)

    assert next_run(daemon, Changes(requested=True), cancelled=False) == (("generic/002",), "requested")
    assert daemon.fstests.decided is not None and daemon.after_run == TREE
    assert queued(daemon) == {
        "reason": "tests/generic/001.out changed → generic/001",
        "tests": ["generic/001"],
    }
    assert not taken_since(daemon, TREE)


def test_a_run_that_takes_the_tree_change_leaves_nothing_waiting(daemon: Daemon) -> None:
    settled(daemon, "tests/generic/001.out")
    daemon.after_run = TREE

    assert next_run(daemon, Changes(kernel=True), cancelled=True) == ((), "new kernel")
    assert daemon.after_run == Changes() and queued(daemon) is None
    assert taken_since(daemon, TREE) and taken_since(daemon, Changes(fstests=True, fstests_all=True))
    assert not taken_since(daemon, TREE | Changes(kernel=True))  # a kernel still wants its run
