"""The bisect state machine against git's real bisect: a tiny repository, a shell "build", a fake verdict.

The repository's `state` file is what the stand-in build and test read: "unbuildable" fails
the build (`kernel.build`), "broken" fails the test. The developer's checkout must come out
of every bisect as it went in.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nixvmd.bisect.driver import BisectPlan, drive
from nixvmd.bisect.record import Bisect, BisectState, BisectStore, Step, Verdict
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from tests.processes import exits_within

T = "example.example_simple_test"
BUILD = "grep -qvx unbuildable state && cp state image"


def _git(tree: Path, *args: str) -> str:
    # No optional locks: the test's own `git status` must not refresh the index it watches.
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    done = subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def _repo(tree: Path, states: Sequence[str]) -> list[str]:
    """One commit per state (a `notes` line too, so every commit changes something); their ids."""
    tree.mkdir()
    _git(tree, "init", "-q")
    (tree / ".gitignore").write_text("image\n*.o\n")
    commits = []
    for n, state in enumerate(states):
        (tree / "state").write_text(state + "\n")
        (tree / "notes").write_text(f"commit {n}\n")
        _git(tree, "add", "-A")
        _git(
            tree, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", f"c{n} {state}"
        )
        commits.append(_git(tree, "rev-parse", "HEAD"))
    (tree / "prebuilt.o").write_text("the developer's build output\n")
    os.utime(tree / "prebuilt.o", ns=(10**18, 10**18))
    return commits


def _checkout(tree: Path) -> tuple[str, str, int, str]:
    """What must not change: HEAD, status, the index's mtime, the branch."""
    index = (tree / ".git" / "index").stat().st_mtime_ns
    return _git(tree, "rev-parse", "HEAD"), _git(tree, "status", "--porcelain"), index, _git(tree, "branch")


def _fake_run(runs: list[str], outcome: Outcome | None = None) -> Callable[[Path, Step], object]:
    async def run_step(image: Path, step: Step) -> RunRecord:
        step.run_id = f"run-{len(runs) + 1}"
        runs.append(step.commit)
        broken = (await asyncio.to_thread(image.read_text)).strip() == "broken"
        record = RunRecord(step.run_id, "kunit-bisect", str(image), "6.1", "direct", 0.0)
        record.outcome = outcome or (Outcome.FAILED if broken else Outcome.PASSED)
        record.reason = "QEMU would not start" if outcome is Outcome.ERROR else ""
        record.tests = [TestResult(T, TestStatus.FAIL if broken else TestStatus.PASS)]
        return record

    return run_step


def _bisect(
    tree: Path,
    store: BisectStore,
    good: str,
    bad: str,
    run_step: Callable[[Path, Step], object],
    build: str = BUILD,
) -> Bisect:
    bisect = store.new(good, bad, (T,), "test")
    plan = BisectPlan(tree, build, Path("image"))
    return asyncio.run(drive(bisect, plan, store, run_step, lambda: None))  # type: ignore[arg-type]


STATES = ["good", "good", "good", "unbuildable", "good", "broken", "broken", "broken"]


def test_the_breaking_commit_is_found_past_one_that_does_not_build(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, STATES)
    before = _checkout(tree)
    store = BisectStore(tmp_path / "state")
    runs: list[str] = []
    bisect = _bisect(tree, store, commits[0], commits[-1], _fake_run(runs))

    assert bisect.state is BisectState.FOUND, bisect.reason
    assert bisect.first_bad == commits[5]
    assert bisect.reason == f"first bad commit {commits[5][:12]} c5 broken"
    first = bisect.steps[0]
    assert (first.commit, first.build, first.verdict) == (commits[3], "failed", Verdict.SKIP)
    assert first.note.startswith("the build failed (exit status 1; see ")
    assert commits[3] not in runs, "an unbuildable commit is never run"
    assert all(
        s.verdict is (Verdict.BAD if s.commit in commits[5:] else Verdict.GOOD) for s in bisect.steps[1:]
    )
    assert _checkout(tree) == before
    assert subprocess.run(["git", "-C", str(tree), "bisect", "log"], capture_output=True).returncode != 0
    # The record on disk is the one returned, with every step.
    assert store.latest() == bisect
    # The worktree was seeded with the developer's build output, its time kept for make.
    seeded = store.worktree / "prebuilt.o"
    assert seeded.read_text() == "the developer's build output\n"
    assert seeded.stat().st_mtime_ns == 10**18


def test_a_second_bisect_reuses_the_worktree_and_its_build(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, STATES)
    store = BisectStore(tmp_path / "state")
    _bisect(tree, store, commits[0], commits[-1], _fake_run([]))
    (store.worktree / "left-by-make.o").write_text("kept\n")
    bisect = _bisect(tree, store, commits[4], commits[6], _fake_run([]))
    assert bisect.state is BisectState.FOUND and bisect.first_bad == commits[5]
    assert (store.worktree / "left-by-make.o").read_text() == "kept\n"


def test_the_developers_stale_worktree_entries_survive_a_bisect_in_a_wiped_state_dir(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, STATES)
    mine = tmp_path / "experiment"
    _git(tree, "worktree", "add", "-q", "--detach", str(mine), commits[2])
    shutil.rmtree(mine)  # the developer's, gone from disk: `git worktree prune` would drop its entry
    store = BisectStore(tmp_path / "state")
    _bisect(tree, store, commits[0], commits[-1], _fake_run([]))
    shutil.rmtree(tmp_path / "state")  # nixvmd's own worktree is now a stale entry too
    bisect = _bisect(tree, BisectStore(tmp_path / "state"), commits[4], commits[6], _fake_run([]))

    assert bisect.state is BisectState.FOUND and bisect.first_bad == commits[5]
    listed = _git(tree, "worktree", "list", "--porcelain")
    assert f"worktree {mine}\n" in listed + "\n" and f"worktree {store.worktree}\n" in listed + "\n"
    # nixvmd's stale entry was taken over, not left beside a second one.
    assert sorted(p.name for p in (tree / ".git" / "worktrees").iterdir()) == ["experiment", "tree"]


def test_skipped_commits_at_the_boundary_leave_it_undecided_in_gits_words(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, ["good", "good", "good", "unbuildable", "broken", "broken", "broken", "broken"])
    bisect = _bisect(tree, BisectStore(tmp_path / "state"), commits[0], commits[-1], _fake_run([]))
    assert bisect.state is BisectState.UNDECIDED
    assert commits[3] in bisect.candidates and commits[4] in bisect.candidates
    assert bisect.reason.startswith("could not tell: commits ")
    assert bisect.first_bad is None


def test_nixvmds_own_failure_stops_the_bisect_with_no_verdict(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, ["good", "good", "broken", "broken"])
    before = _checkout(tree)
    store = BisectStore(tmp_path / "state")
    bisect = _bisect(tree, store, commits[0], commits[-1], _fake_run([], Outcome.ERROR))
    assert bisect.state is BisectState.ERROR
    assert len(bisect.steps) == 1 and bisect.steps[0].verdict is Verdict.ERROR
    assert bisect.reason == f"step 1 ({bisect.steps[0].commit[:12]}): run run-1 broke: QEMU would not start"
    assert _checkout(tree) == before
    assert (
        subprocess.run(["git", "-C", str(store.worktree), "bisect", "log"], capture_output=True).returncode
        != 0
    )


def test_a_bad_revision_ends_it_in_one_sentence(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, ["good", "broken"])
    bisect = _bisect(tree, BisectStore(tmp_path / "state"), commits[1], commits[0], _fake_run([]))
    assert bisect.state is BisectState.ERROR
    assert "\n" not in bisect.reason and bisect.reason.startswith("git bisect start")


def test_stopping_kills_the_build_and_leaves_nothing_running(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commits = _repo(tree, STATES)
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    store = BisectStore(tmp_path / "state")
    bisect = store.new(commits[0], commits[-1], (T,), "test")
    plan = BisectPlan(tree, f"sleep 300 & echo $! > {fifo}; wait", Path("image"))

    async def go() -> int:
        task = asyncio.create_task(drive(bisect, plan, store, _fake_run([]), lambda: None))  # type: ignore[arg-type]
        pid = int(await asyncio.to_thread(fifo.read_text))  # the build's sleep is running
        bisect.reason = "stopped by the test"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    sleeper = asyncio.run(go())
    assert bisect.state is BisectState.STOPPED and bisect.reason == "stopped by the test"
    assert exits_within(sleeper, 10), "the build's sleep outlived the bisect"
    assert store.latest() == bisect
