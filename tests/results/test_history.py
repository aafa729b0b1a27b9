"""A finished run against the ones before it: only the kernel's verdicts are compared."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.report.notification import EventKind, triggered_events
from nixvmd.results.history import compare_with_history, rerun_failures
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.results.store import RunStore
from nixvmd.suite.base import SuiteRun
from nixvmd.watch.git_tree import read_git_state
from nixvmd.watch.kernel_image import KernelImage
from tests.git_trees import one_commit_tree


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n', name="test.toml", base=tmp_path)


def finished(store: RunStore, outcome: Outcome, *tests: tuple[str, TestStatus], at: float) -> RunRecord:
    run_id, _ = store.new_run_dir(at)
    record = RunRecord(run_id, "command", "/k/bzImage", "6.1.0", "direct", at, outcome=outcome)
    record.tests = [TestResult(name, status) for name, status in tests]
    record.finished_at = at + 1
    store.save(record)
    return record


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.CANCELLED])
def test_a_run_nixvmd_could_not_finish_after_a_pass_has_no_regressions(
    config: Config, outcome: Outcome
) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.PASSED, ("a", TestStatus.PASS), ("b", TestStatus.PASS), at=1000)
    broken = finished(store, outcome, ("a", TestStatus.ERROR), ("b", TestStatus.ERROR), at=2000)
    broken.regressions = ["stale"]  # whatever was there, a non-verdict keeps none
    compare_with_history(broken, store, config)
    assert broken.regressions == [] and broken.fixes == []
    assert store.load(broken.id).regressions == []


def test_the_next_verdict_compares_with_the_last_verdict_not_with_the_error(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), at=1000)
    finished(store, Outcome.ERROR, ("a", TestStatus.ERROR), at=2000)
    passed = finished(store, Outcome.PASSED, ("a", TestStatus.PASS), at=3000)
    compare_with_history(passed, store, config)
    assert passed.fixes == ["a"]
    failed_again = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), at=4000)
    compare_with_history(failed_again, store, config)
    assert failed_again.regressions == ["a"]


def test_a_test_name_garbled_once_is_no_new_test_and_no_phantom_regression(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    resource = "kunit-resource-test.alloc"
    finished(store, Outcome.FAILED, (resource, TestStatus.FAIL), ("b", TestStatus.PASS), at=1000)
    garbled = finished(
        store, Outcome.FAILED, ("kunit-resurce-test.alloc", TestStatus.FAIL), ("b", TestStatus.PASS), at=2000
    )

    compare_with_history(garbled, store, config)

    # Still the same failing test as before: not a new one, so not a regression.
    assert [t.name for t in garbled.tests] == [resource, "b"]
    assert garbled.regressions == [] and garbled.fixes == []
    saved = store.load(garbled.id)
    assert [(s.seen, s.kept) for s in saved.suspect_lines] == [("kunit-resurce-test.alloc", resource)]


def test_a_run_whose_only_failures_are_known_passes_and_notifies_nobody(config: Config) -> None:
    config.baseline_path.parent.mkdir(parents=True)
    config.baseline_path.write_text("a\n")
    store = RunStore(config.daemon.state_dir)
    failed = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.PASS), at=1000)
    compare_with_history(failed, store, config)
    assert failed.outcome is Outcome.PASSED
    assert failed.known_failures == ["a"] and failed.regressions == []
    assert failed.reason == "1 known failure, as the baseline expects"
    saved = store.load(failed.id)
    assert (saved.outcome, saved.known_failures) == (Outcome.PASSED, ["a"])
    summary = saved.summary()
    assert summary["known_failures"] == ["a"]
    assert triggered_events(summary) == frozenset()  # the default notify.on


def test_a_known_failure_beside_a_new_one_still_fails(config: Config) -> None:
    config.baseline_path.parent.mkdir(parents=True)
    config.baseline_path.write_text("a\n")
    store = RunStore(config.daemon.state_dir)
    failed = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.ERROR), at=1000)
    compare_with_history(failed, store, config)
    assert failed.outcome is Outcome.FAILED
    assert (failed.known_failures, failed.regressions) == (["a"], ["b"])
    assert EventKind.REGRESSION in triggered_events(failed.summary())


def test_a_crash_with_only_known_failures_is_still_a_crash(config: Config) -> None:
    config.baseline_path.parent.mkdir(parents=True)
    config.baseline_path.write_text("a\n")
    store = RunStore(config.daemon.state_dir)
    crashed = finished(store, Outcome.CRASHED, ("a", TestStatus.ERROR), at=1000)
    compare_with_history(crashed, store, config)
    assert crashed.outcome is Outcome.CRASHED and crashed.known_failures == ["a"]


def narrowed(store: RunStore, *tests: tuple[str, TestStatus], at: float) -> RunRecord:
    """A `nixvmctl run --tests` run: only `tests` ran."""
    record = finished(store, Outcome.PASSED, *tests, at=at)
    record.narrowed_to = [name for name, _ in tests]
    store.save(record)
    return record


def test_a_narrowed_run_in_between_speaks_only_for_the_tests_it_ran(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.PASS), at=1000)
    narrowed(store, ("b", TestStatus.PASS), at=2000)
    full = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.PASS), at=3000)
    compare_with_history(full, store, config)
    # `a` failed in the last run that ran it: still failing, no news.
    assert full.regressions == [] and full.fixes == []


def test_the_newest_run_that_ran_a_test_gives_its_previous_verdict(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.FAIL), at=1000)
    narrowed(store, ("a", TestStatus.PASS), at=2000)  # a fixed, tried on its own
    narrowed(store, ("c", TestStatus.PASS), at=2500)
    full = finished(
        store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.PASS), ("c", TestStatus.FAIL), at=3000
    )
    compare_with_history(full, store, config)
    assert full.regressions == ["a", "c"]
    assert full.fixes == ["b"]


def test_only_the_runs_back_to_the_last_full_one_are_asked(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), at=1000)
    finished(store, Outcome.PASSED, ("b", TestStatus.PASS), at=1500)  # a full run without `a`
    narrowed(store, ("b", TestStatus.PASS), at=2000)
    full = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), ("b", TestStatus.PASS), at=3000)
    compare_with_history(full, store, config)
    # The last full run did not have `a`: it is new there, so its failure is news.
    assert full.regressions == ["a"]


def test_a_day_of_narrowed_runs_does_not_hide_the_last_full_run(config: Config) -> None:
    store = RunStore(config.daemon.state_dir)
    finished(
        store, Outcome.FAILED, ("a", TestStatus.PASS), ("b", TestStatus.FAIL), ("c", TestStatus.FAIL), at=1000
    )
    for k in range(25):  # a day spent on test a: each edit a narrowed run
        narrowed(store, ("a", TestStatus.PASS), at=2000 + k)
    full = finished(
        store, Outcome.FAILED, ("a", TestStatus.PASS), ("b", TestStatus.FAIL), ("c", TestStatus.PASS), at=3000
    )
    compare_with_history(full, store, config)
    # b failed in the full run before the 25 narrowed ones: still failing, no news; c is fixed.
    assert full.regressions == [] and full.fixes == ["c"]


def test_a_rerun_of_new_failures_is_recorded_with_the_runs_commit_and_build(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    commit = one_commit_tree(tree)
    state_dir = tmp_path / "state"
    text = f'[kernel]\ntree = "{tree}"\n[suite]\nrerun_failed = 2\n[daemon]\nstate_dir = "{state_dir}"\n'
    config = parse_config(text, name="test.toml", base=tmp_path)
    store = RunStore(config.daemon.state_dir)
    finished(store, Outcome.PASSED, ("a", TestStatus.PASS), at=1000)
    kernel = KernelImage(tree / "bzImage", "6.1.0 (t@h) #4", 512, 0.0, "digest")
    record = finished(store, Outcome.FAILED, ("a", TestStatus.FAIL), at=2000)
    record.kernel_build = "#4"
    state = asyncio.run(read_git_state(tree))
    assert state is not None
    record.git = state.to_json()

    async def execute(narrowed: Config, suite: SuiteRun, rerun: RunRecord, run_dir: Path) -> None:
        rerun.outcome, rerun.finished_at = Outcome.FAILED, rerun.started_at + 1
        rerun.tests = [TestResult("a", TestStatus.FAIL)]
        store.save(rerun)

    asyncio.run(rerun_failures(record, kernel, config, store, execute))

    assert len(record.reruns) == 2
    for rerun_id in record.reruns:
        rerun = store.load(rerun_id)
        assert rerun.suite == "command-rerun"
        assert rerun.git == {"commit": commit, "dirty": False}
        assert rerun.build == f"6.1.0 #4 {commit[:7]}"
