"""The daemon's bisect choices: the tests by default, a known good commit for `[bisect] auto`, the image."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from nixvmd.bisect.git import BisectError
from nixvmd.bisect.record import BisectState, BisectStore
from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.daemon.bisecting import Bisecting, bisect_plan, default_tests, known_good
from nixvmd.plan.planner import Changes, LoopState, Step, plan
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.results.store import RunStore

T, U = "example.example_simple_test", "example.example_skip_test"


def _config(tmp_path: Path, extra: str = "") -> Config:
    text = (
        f'[kernel]\ntree = "{tmp_path / "linux"}"\n{extra}\n'
        f'[suite]\nkind = "kunit"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    return parse_config(text, name="test.toml", base=tmp_path)


def _save(
    store: RunStore, suite: str, commit: str | None, dirty: bool = False, **statuses: TestStatus
) -> RunRecord:
    run_id, _ = store.new_run_dir()
    record = RunRecord(run_id, suite, "/k", "6.1", "direct", 0.0, outcome=Outcome.PASSED)
    record.tests = [TestResult(name.replace("__", "."), status) for name, status in statuses.items()]
    if any(s.failing for s in statuses.values()):
        record.outcome = Outcome.FAILED
    record.git = None if commit is None else {"commit": commit, "dirty": dirty}
    previous = store.latest(suite, before=run_id, finished_only=True)
    passed = {t.name for t in previous.tests if t.status is TestStatus.PASS} if previous else set()
    record.regressions = [t.name for t in record.tests if t.status.failing and t.name in passed]
    store.save(record)
    return record


P, F = TestStatus.PASS, TestStatus.FAIL


def test_the_tests_default_to_the_latest_runs_regressions_and_bisect_steps_do_not_count(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    store = RunStore(config.daemon.state_dir)
    with pytest.raises(BisectError, match="no run to take regressions from"):
        default_tests(store, config)
    _save(store, "kunit", "a" * 40, example__example_simple_test=P)
    with pytest.raises(BisectError, match=r"has no regressions; name the tests with --tests"):
        default_tests(store, config)
    _save(store, "kunit", "b" * 40, example__example_simple_test=F)
    _save(store, "kunit-bisect", "c" * 40, example__example_simple_test=F, example__example_skip_test=F)
    assert default_tests(store, config) == (T,)


def test_auto_bisect_starts_from_the_newest_clean_commit_that_passed_the_regressions(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "state")
    _save(store, "kunit", "1" * 40, example__example_simple_test=P, example__example_skip_test=P)
    _save(store, "kunit", "2" * 40, dirty=True, example__example_simple_test=P, example__example_skip_test=P)
    _save(store, "kunit", None, example__example_simple_test=P, example__example_skip_test=P)
    _save(store, "kunit", "3" * 40, example__example_simple_test=P, example__example_skip_test=F)
    _save(store, "kunit-bisect", "4" * 40, example__example_simple_test=P, example__example_skip_test=P)
    broke = _save(store, "kunit", "5" * 40, example__example_simple_test=F, example__example_skip_test=F)
    assert broke.regressions == [T]
    # Not the dirty tree, not the run without a commit, not a bisect's step: the first clean one.
    assert known_good(store, broke) == "3" * 40
    broke.regressions = [T, U]
    assert known_good(store, broke) == "1" * 40
    broke.regressions = ["never.passed"]
    assert known_good(store, broke) is None


def test_the_image_must_be_inside_the_tree(tmp_path: Path) -> None:
    assert bisect_plan(_config(tmp_path)).image == Path("arch/x86/boot/bzImage")
    inside = _config(tmp_path, f'image = "{tmp_path / "linux" / "out" / "bzImage"}"')
    assert bisect_plan(inside).image == Path("out/bzImage")
    outside = _config(tmp_path, 'image = "/boot/vmlinuz"')
    with pytest.raises(BisectError, match=r"outside kernel\.tree"):
        bisect_plan(outside)


def test_while_a_bisect_has_the_vm_every_change_waits_for_its_end() -> None:
    for changes in (Changes(kernel=True), Changes(requested=True)):
        decision = plan(changes, LoopState(have_kernel=True, bisecting=True))
        assert decision.steps == (Step.KEEP,)
        assert decision.reason.startswith("a bisect has the VM")


def test_a_bisect_left_running_by_a_daemon_that_died_ends_in_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = BisectStore(config.daemon.state_dir)
    left = store.new("a" * 40, "b" * 40, (T,), "test")
    Bisecting(SimpleNamespace(config=config))  # type: ignore[arg-type]
    found = store.latest()
    assert found is not None and found.id == left.id
    assert (found.state, found.reason) == (BisectState.ERROR, "nixvmd stopped during this bisect")


def test_auto_bisect_starts_after_a_run_with_new_regressions_on_a_clean_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[str, str | None, tuple[str, ...], str]] = []

    async def start(self: Bisecting, good: str, bad: str | None, tests: tuple[str, ...], by: str) -> None:
        started.append((good, bad, tests, by))

    monkeypatch.setattr(Bisecting, "start", start)
    config = _config(tmp_path, "[bisect]\nauto = true")
    store = RunStore(config.daemon.state_dir)
    bisecting = Bisecting(SimpleNamespace(config=config, store=store))  # type: ignore[arg-type]
    _save(store, "kunit", "1" * 40, example__example_simple_test=P)
    broke = _save(store, "kunit", "2" * 40, example__example_simple_test=F)

    asyncio.run(bisecting.after_run(broke, config))
    assert started == [("1" * 40, "2" * 40, (T,), f"run {broke.id}")]

    started.clear()
    asyncio.run(bisecting.after_run(broke, _config(tmp_path)))  # [bisect] auto is off by default
    assert broke.git is not None
    broke.git["dirty"] = True
    asyncio.run(bisecting.after_run(broke, config))
    assert started == []
