"""The memory of verdicts: which (kernel, config, image) needs no run again, across restarts."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.daemon.tested import KEEP, TestedKernels, config_fingerprint, guest_inputs, run_key
from nixvmd.results.record import Outcome, RunRecord


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n', name="test.toml", base=tmp_path)


def judged(run_id: str, outcome: Outcome) -> RunRecord:
    record = RunRecord(run_id, "command", "/k/bzImage", "6.1.192", "direct", 1.0, outcome=outcome)
    record.kernel_build = "#7"
    return record


def test_a_verdict_outlives_the_daemon(config: Config) -> None:
    key = run_key(config, "digest-a", "image-1")
    TestedKernels(config.daemon.state_dir).remember(key, judged("r1", Outcome.PASSED))
    again = TestedKernels(config.daemon.state_dir)  # a restarted daemon
    assert again.why_not_run(key, None) == (
        "kernel 6.1.192 #7 unchanged since run r1 (passed); nixvmctl run to test it again"
    )
    assert again.why_not_run(run_key(config, "digest-b", "image-1"), None) is None


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.CANCELLED, Outcome.RUNNING])
def test_a_run_that_judged_nothing_is_not_remembered(config: Config, outcome: Outcome) -> None:
    tested = TestedKernels(config.daemon.state_dir)
    key = run_key(config, "digest-a", "image-1")
    tested.remember(key, judged("r1", outcome))
    assert tested.why_not_run(key, None) is None
    assert not tested.path.exists()


def test_the_running_run_covers_its_own_kernel(config: Config) -> None:
    tested = TestedKernels(config.daemon.state_dir)
    key = run_key(config, "digest-a", "image-1")
    running = judged("r2", Outcome.RUNNING)
    assert tested.why_not_run(key, (key, running)) == "kernel 6.1.192 #7 unchanged: run r2 is testing it"
    assert tested.why_not_run(run_key(config, "digest-b", "image-1"), (key, running)) is None


def test_the_key_follows_kernel_config_and_image_but_not_notify_or_daemon(config: Config) -> None:
    key = run_key(config, "digest-a", "image-1")
    assert run_key(config, "digest-a", "image-2") != key
    vm = dataclasses.replace(config, vm=dataclasses.replace(config.vm, memory=config.vm.memory * 2))
    assert run_key(vm, "digest-a", "image-1") != key
    cmdline = dataclasses.replace(config, kernel=dataclasses.replace(config.kernel, cmdline="quiet"))
    assert run_key(cmdline, "digest-a", "image-1") != key
    quiet = dataclasses.replace(config, notify=dataclasses.replace(config.notify, on=()))
    settle = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, settle=1.0))
    assert config_fingerprint(quiet) == config_fingerprint(settle) == config_fingerprint(config)


def test_only_the_newest_verdicts_are_kept(config: Config) -> None:
    tested = TestedKernels(config.daemon.state_dir)
    keys = [run_key(config, f"digest-{n}", "image") for n in range(KEEP + 1)]
    for n, key in enumerate(keys):
        tested.remember(key, judged(f"r{n}", Outcome.FAILED))
    tested.remember(keys[1], judged("again", Outcome.PASSED))  # seen again: now the newest
    tested.remember(run_key(config, "digest-new", "image"), judged("new", Outcome.PASSED))
    again = TestedKernels(config.daemon.state_dir)
    assert again.verdict(keys[0]) is None and again.verdict(keys[2]) is None
    kept = again.verdict(keys[1])
    assert kept is not None and kept.run_id == "again"
    assert len(json.loads(again.path.read_text())["verdicts"]) == KEEP


def test_an_unreadable_memory_costs_a_run_not_the_daemon(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    path = config.daemon.state_dir / "tested.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        tested = TestedKernels(config.daemon.state_dir)
    assert tested.verdict(run_key(config, "digest-a", "image")) is None
    assert "will be run again" in caplog.text


def test_a_watched_fstests_tree_is_an_input_and_on_change_is_not(tmp_path: Path) -> None:
    tree = tmp_path / "xfstests-dev"
    (tree / "tests" / "generic").mkdir(parents=True)
    golden = tree / "tests" / "generic" / "001.out"
    golden.write_text("QA output created by 001\n")
    text = f'[image]\nshare_host_root = true\n[suite]\nkind = "xfstests"\n[xfstests]\ndir = "{tree}"\n'
    watched = parse_config(text, name="test.toml", base=tmp_path)
    before = run_key(watched, "digest-a", guest_inputs(watched, "image-1"))

    (tree / "tests" / "generic" / "001.o").write_bytes(b"object")  # not an input
    assert run_key(watched, "digest-a", guest_inputs(watched, "image-1")) == before
    golden.write_text("QA output created by 001\nSilence is golden\n")
    after = run_key(watched, "digest-a", guest_inputs(watched, "image-1"))
    assert after != before

    off = parse_config(text + 'on_change = "off"\n', name="test.toml", base=tmp_path)
    assert guest_inputs(off, "image-1") == "image-1"  # an unwatched tree is not followed
    assert config_fingerprint(off) == config_fingerprint(watched)
