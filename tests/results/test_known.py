"""The baseline lock: a writer waits for another one (daemon or nixvmctl), within a limit."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.results.baseline import Baseline
from nixvmd.results.known import BASELINE_LOCK, BaselineBusy, accept_failures, baseline_lock
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.results.store import RunStore


@pytest.fixture
def held(tmp_path: Path) -> Iterator[int]:
    """The baseline lock of tmp_path, held through a descriptor of its own (as another process would)."""
    fd = os.open(tmp_path / BASELINE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_writer_waits_for_the_holder_and_then_writes(tmp_path: Path, held: int) -> None:
    said: list[str] = []

    def holder_finishes(message: str) -> None:
        said.append(message)
        fcntl.flock(held, fcntl.LOCK_UN)  # the other writer is done

    with baseline_lock(tmp_path, wait_s=60, on_wait=holder_finishes):
        assert (tmp_path / BASELINE_LOCK).read_text() == f"{os.getpid()}\n"
    assert said == [
        "the baseline is being changed by process 4242 (nixvmd or nixvmctl); waiting up to 60s for it"
    ]


def test_a_writer_gives_up_after_its_wait_and_says_who_holds_the_lock(tmp_path: Path, held: int) -> None:
    busy = pytest.raises(BaselineBusy, match=r"still being changed by process 4242 .* after 0.2s")
    with busy, baseline_lock(tmp_path, wait_s=0.2):
        pytest.fail("the lock was taken twice")


def test_an_uncontended_lock_says_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    with baseline_lock(tmp_path / "new-state", wait_s=0, on_wait=said.append):
        pass
    with baseline_lock(tmp_path / "new-state", wait_s=0, on_wait=said.append):
        pass
    assert said == []


def test_accept_says_what_it_added_what_was_known_and_what_it_could_not_write(tmp_path: Path) -> None:
    config = parse_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n', name="t.toml", base=tmp_path)
    store = RunStore(config.daemon.state_dir)
    run_id, _ = store.new_run_dir(1000)
    record = RunRecord(run_id, "kunit", "/k", "6.1.0", "direct", 1000, outcome=Outcome.FAILED)
    names = ["known.case", "suite.#2", 'say "hi"', "suite.#2", "passing"]
    record.tests = [TestResult(n, TestStatus.PASS if n == "passing" else TestStatus.FAIL) for n in names]
    store.save(record)
    config.baseline_path.parent.mkdir(parents=True, exist_ok=True)
    config.baseline_path.write_text("known.case\n")

    reply = accept_failures(store, config, None, wait_s=1)

    assert reply["accepted"] == ["suite.#2"]
    assert reply["already_known"] == ["known.case"]
    assert reply["left_out"] == ['say "hi"']
    baseline = Baseline.load(config.baseline_path)
    assert baseline.applies("suite.#2", "6.1.0") and not baseline.applies('say "hi"', "6.1.0")
