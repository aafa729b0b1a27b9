"""Results across runs: regressions against the previous run, and a baseline that absorbs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KEPT_DISK, DaemonProcess, KernelTree, SampleKernel, direct_config, kept_disk

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]


def test_a_new_failure_is_a_regression_until_the_baseline_accepts_it(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # Passes on a fresh kept disk and marks it; fails on every later run.
    command = (
        f"k={KEPT_DISK}; if head -c 4 $k | grep -q MARK; then echo broken now; exit 1; fi; "
        "echo MARK | dd of=$k conv=fsync 2>/dev/null; exit 0"
    )
    state = tmp_path / "state"
    sock = short_tmp / "ctl.sock"
    daemon = daemon_factory(
        direct_config(
            kernel_tree, cloud_kernel, state, sock, command=command, qemu_options=kept_disk(tmp_path)
        )
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    first = events.run_end()
    assert first["outcome"] == "passed" and first["regressions"] == []

    daemon.call("run")
    second = events.run_end()
    assert second["outcome"] == "failed"
    assert second["regressions"] == [command]
    assert daemon.status()["last_run"]["regressions"] == [command]
    junit = (state / "runs" / second["run_id"] / "junit.xml").read_text()
    assert 'type="regression"' in junit

    accepted = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), "baseline", "accept", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stderr
    answer = json.loads(accepted.stdout)
    assert answer["run_id"] == second["run_id"] and answer["accepted"] == [command]
    assert command in Path(answer["baseline"]).read_text()

    daemon.call("run")
    third = events.run_end()
    assert third["outcome"] == "passed"  # its only failure is known now: no news, no notification
    assert third["regressions"] == [] and third["known_failures"] == [command]
    record = json.loads((state / "runs" / third["run_id"] / "run.json").read_text())
    assert record["known_failures"] == [command]

    history = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), "history"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    header, *lines = history.stdout.strip().splitlines()
    assert header.startswith("RUN ") and "OUTCOME" in header
    assert [line.split()[0] for line in lines] == [first["run_id"], second["run_id"], third["run_id"]]
    assert lines[1].endswith(f"regressions: {command}") and "regressions" not in lines[2]


def test_run_with_tests_narrows_only_that_run(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    sock = short_tmp / "ctl.sock"
    command = 'echo "chosen:[$NIXVMD_TESTS]"'
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, sock, command=command))
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    events.run_end()

    def console_of(run_id: str) -> str:
        return (state / "runs" / run_id / "console.log").read_text()

    asked = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), "run", "--tests", "t1", "t2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert asked.returncode == 0, asked.stderr
    narrowed = events.run_end()
    assert "chosen:[t1 t2]" in console_of(narrowed["run_id"])
    daemon.call("run")
    whole = events.run_end()
    assert "chosen:[]" in console_of(whole["run_id"])

    def record_of(run_id: str) -> dict[str, object]:
        data: dict[str, object] = json.loads((state / "runs" / run_id / "run.json").read_text())
        return data

    assert record_of(narrowed["run_id"])["narrowed_to"] == ["t1", "t2"]
    assert record_of(whole["run_id"])["narrowed_to"] == []
    history = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), "history"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = {line.split()[0]: line for line in history.stdout.splitlines()[1:]}
    assert lines[narrowed["run_id"]].endswith("narrowed to t1, t2")
    assert "narrowed" not in lines[whole["run_id"]]


def test_a_failure_that_passes_when_run_again_is_flaky_not_a_regression(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # Fails on a fresh kept disk (and marks it); passes on every later run.
    command = (
        f"k={KEPT_DISK}; if head -c 4 $k | grep -q MARK; then exit 0; fi; "
        "echo MARK | dd of=$k conv=fsync 2>/dev/null; echo first time fails; exit 1"
    )
    state = tmp_path / "state"
    text = direct_config(
        kernel_tree,
        cloud_kernel,
        state,
        short_tmp / "ctl.sock",
        command=command,
        qemu_options=kept_disk(tmp_path),
    )
    daemon = daemon_factory(text.replace("[suite]\n", "[suite]\nrerun_failed = 1\n", 1))
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.wait_for(
        lambda e: e["event"] == "run" and e.get("phase") == "end" and e.get("suite") == "command", 400
    )
    assert end["outcome"] == "failed"
    assert end["flaky"] == [command]
    assert end["regressions"] == []
    record = json.loads((state / "runs" / end["run_id"] / "run.json").read_text())
    assert len(record["reruns"]) == 1
    rerun = json.loads((state / "runs" / record["reruns"][0] / "run.json").read_text())
    assert rerun["outcome"] == "passed" and rerun["suite"] == "command-rerun"
