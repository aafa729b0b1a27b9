"""A Nix build's output replayed on the host: the console through a local run's parsers, no QEMU.

Each output is written here as the builder leaves it ($out: console.log with the agent's
frames on it, qemu.log, exit, seed); the frames carry the nonce the seed pins, so only the
suite made from that seed accepts them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nixvmd.config.schema import Config
from nixvmd.distribute.replay import replay_output
from nixvmd.guest.protocol import pinned_tokens
from nixvmd.results.record import Outcome, RunRecord, TestStatus
from nixvmd.suite.registry import make_suite
from tests.conftest import KernelTree, SampleKernel
from tests.distribute.configs import command_config

SEED = "5eed"
BOOT = ["[    0.000000] Linux version 6.1.0-test", "Run /init as init process"]


@pytest.fixture
def config(kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path) -> Config:
    return command_config(kernel_tree, cloud_kernel, tmp_path, command="echo hello")


def _nonce(config: Config, seed: str = SEED) -> str:
    with pinned_tokens(seed):
        return make_suite(config).job().nonce


def _output(tmp_path: Path, lines: list[str], exit_status: int, seed: str = SEED) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "console.log").write_text("".join(f"{line}\r\n" for line in lines))
    (out / "qemu.log").write_text("")
    (out / "exit").write_text(f"{exit_status}\n")
    (out / "seed").write_text(f"{seed}\n")
    return out


def _frames(nonce: str, *events: str) -> list[str]:
    return [f"@@NIXVMD@@ {nonce} {seq} {event} @@" for seq, event in enumerate(events, 1)]


def _replay(config: Config, out: Path, tmp_path: Path) -> RunRecord:
    record = RunRecord("r1/shard-0", "command", "bzImage", "", "direct", time.time())
    return replay_output(config, out, (), record, tmp_path / "run")


def test_a_finished_guest_passes_with_its_output(config: Config, tmp_path: Path) -> None:
    ready, start, exit_ = _frames(_nonce(config), "ready 6.1.0-test", "start command", "exit 0")
    lines = [*BOOT, ready, start, "hello", exit_, "reboot: Power down"]
    record = _replay(config, _output(tmp_path, lines, 0), tmp_path)
    assert (record.outcome, record.reason, record.exit_status) == (Outcome.PASSED, "", 0)
    assert [(t.name, t.status) for t in record.tests] == [("echo hello", TestStatus.PASS)]
    assert record.kernel_version == "6.1.0-test"
    assert (tmp_path / "run" / "console.log").read_text().count("hello") == 1
    assert not (tmp_path / "run" / "scratch").exists()


def test_a_failing_command_fails_with_its_last_line(config: Config, tmp_path: Path) -> None:
    ready, start, exit_ = _frames(_nonce(config), "ready 6.1.0-test", "start command", "exit 3")
    lines = [*BOOT, ready, start, "it broke", exit_, "reboot: Power down"]
    record = _replay(config, _output(tmp_path, lines, 0), tmp_path)
    assert record.outcome is Outcome.FAILED
    assert record.tests[0].status is TestStatus.FAIL
    assert "exit status 3: it broke" in record.tests[0].message


def test_frames_of_another_job_are_not_this_shards(config: Config, tmp_path: Path) -> None:
    """The seed in $out decides the nonce: frames made for another seed end nothing."""
    frames = _frames(_nonce(config, "another seed"), "ready 6.1.0-test", "start command", "exit 0")
    record = _replay(config, _output(tmp_path, [*BOOT, *frames], 0), tmp_path)
    assert record.outcome is Outcome.CRASHED
    assert "went down by itself" in record.reason


def test_a_panic_is_a_crash_and_the_build_still_counts(config: Config, tmp_path: Path) -> None:
    ready, start = _frames(_nonce(config), "ready 6.1.0-test", "start command")
    panic = "[   12.5] Kernel panic - not syncing: sysrq triggered crash"
    record = _replay(config, _output(tmp_path, [*BOOT, ready, start, panic], 0), tmp_path)
    assert record.outcome is Outcome.CRASHED
    assert "sysrq triggered crash" in record.reason


def test_the_builders_deadline_is_a_timeout_of_the_suite_or_the_boot(config: Config, tmp_path: Path) -> None:
    ready, start = _frames(_nonce(config), "ready 6.1.0-test", "start command")
    record = _replay(config, _output(tmp_path, [*BOOT, ready, start, "still going"], 137), tmp_path)
    assert record.outcome is Outcome.TIMEOUT
    assert "suite.timeout" in record.reason
    assert '; the console\'s last line: "still going" (in echo hello)' in record.reason
    (tmp_path / "boot").mkdir()
    record = _replay(config, _output(tmp_path / "boot", BOOT, 137), tmp_path / "boot")
    assert record.outcome is Outcome.TIMEOUT
    assert "vm.boot_timeout" in record.reason
    assert f'; the console\'s last line: "{BOOT[-1].strip()}"; see console.log' in record.reason


def test_qemu_that_did_not_start_is_an_error_not_the_kernels(config: Config, tmp_path: Path) -> None:
    out = _output(tmp_path, [], 1)
    (out / "qemu.log").write_text("qemu: could not load kernel\n")
    record = _replay(config, out, tmp_path)
    assert record.outcome is Outcome.ERROR
    assert "QEMU exited unexpectedly (exit status 1)" in record.reason


def test_an_output_without_its_files_is_an_error(config: Config, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    record = _replay(config, out, tmp_path)
    assert record.outcome is Outcome.ERROR
    assert "seed is missing" in record.reason
