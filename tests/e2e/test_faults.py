"""Faults a real workstation throws at the loop: a guest that halts, a QEMU killed by the
host, a daemon killed mid-run, a cancel while QEMU starts. Real daemon, QEMU and kernel."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    KEPT_DISK,
    DaemonProcess,
    KernelTree,
    SampleKernel,
    another_build,
    direct_config,
    kept_disk,
    run_once,
)
from tests.processes import exits_within

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]


def _run_json(state: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return data


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _qemu_of(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    pids = [
        p for p in _children(daemon.proc.pid) if b"qemu-system" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert len(pids) == 1, f"expected one QEMU under the daemon, found {pids}"
    return pids[0]


def _socket_dir_of(record: dict[str, Any]) -> Path:
    """The VM's socket directory, from the QEMU command line in its run record."""
    match = re.search(r"path=(/[^,]*/nixvmd-vm-[^/,]+)/qmp", " ".join(record["command"]))
    assert match, record["command"]
    return Path(match.group(1))


@pytest.mark.parametrize(
    ("command", "marker"),
    [("halt -f", "reboot: System halted"), ("poweroff -f", "reboot: Power down")],
    ids=["halt", "poweroff"],
)
def test_a_guest_that_halts_or_powers_off_ends_as_crashed_long_before_the_suite_timeout(
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    command: str,
    marker: str,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    config.write_text(
        direct_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock", command=command, timeout="10m")
    )
    # Waiting out suite.timeout (10 minutes) would overrun this bound by far.
    done = run_once(config, "--json", timeout=240)
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == "crashed"
    assert "by itself" in record["reason"]
    assert marker in (state / "runs" / record["id"] / "console.log").read_text()


def test_a_run_that_errors_after_a_pass_has_no_regressions(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    # The first run marks the kept disk and passes; the second finds the mark and waits.
    command = (
        f"k={KEPT_DISK}; if head -c 4 $k | grep -q MARK; then echo waiting-to-be-killed; sleep 600; fi; "
        "echo MARK | dd of=$k conv=fsync 2>/dev/null; exit 0"
    )
    daemon = daemon_factory(
        direct_config(
            kernel_tree,
            cloud_kernel,
            state,
            short_tmp / "ctl.sock",
            command=command,
            timeout="10m",
            qemu_options=kept_disk(tmp_path),
        )
    )
    events = daemon.events(["run", "console"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    assert events.run_end()["outcome"] == "passed"

    kernel_tree.write_in_place(another_build(image, 2))
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "waiting-to-be-killed", 240)
    os.kill(_qemu_of(daemon), signal.SIGKILL)  # what the host's OOM killer would do
    end = events.run_end(60)
    assert end["outcome"] == "error"
    assert "QEMU exited unexpectedly" in end["reason"]
    assert end["regressions"] == [] and end["fixes"] == []
    record = _run_json(state, end["run_id"])
    assert record["tests"][0]["status"] == "error"  # the command did not finish...
    assert record["regressions"] == []  # ...but that is not the kernel's fault
    assert daemon.status()["last_run"]["regressions"] == []
    events.close()


def test_a_daemon_killed_mid_run_leaves_an_error_record_and_nothing_else(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    config = direct_config(
        kernel_tree,
        cloud_kernel,
        state,
        short_tmp / "ctl.sock",
        command="echo waiting-to-be-killed; sleep 600",
        timeout="10m",
    )
    daemon = daemon_factory(config)
    events = daemon.events(["run", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "waiting-to-be-killed", 240)
    events.close()
    running = _run_json(state, started["run_id"])
    assert running["outcome"] == "running"  # on disk from the start
    sockets = _socket_dir_of(running)
    assert sockets.is_dir()
    qemu = _qemu_of(daemon)
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.stop()
    assert exits_within(qemu, 30), "QEMU outlived its daemon"  # PR_SET_PDEATHSIG
    scratch = state / "runs" / started["run_id"] / "scratch"
    assert (scratch / "initrd.cpio").exists() and (scratch / "disks" / "scratch.img").exists()
    assert sockets.is_dir()  # nobody cleaned up: the daemon had no chance

    kernel_tree.image.unlink()  # so the new daemon has nothing to run: history is all there is
    again = daemon_factory(config)  # the same state dir and socket
    history = again.call("history")
    assert [r["id"] for r in history] == [started["run_id"]]
    assert history[0]["outcome"] == "error"
    assert history[0]["reason"] == "nixvmd stopped during this run (killed?)"
    record = _run_json(state, started["run_id"])
    assert record["outcome"] == "error" and record["finished_at"] is not None
    assert not scratch.exists()  # the dead run's disks and initrd went with its recovery
    assert not sockets.exists()
    assert again.status()["last_run"]["id"] == started["run_id"]
    assert again.stop() == 0  # before the factory looks for the killed daemon's socket


def test_a_run_cancelled_while_qemu_starts_leaves_no_stray_task_errors(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    # A QEMU that waits on a FIFO nobody writes: the run is stuck in Machine.start.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    qemu = tmp_path / "slow-qemu"
    qemu.write_text(f'#!/bin/sh\nread line < "{gate}"\nexec qemu-system-x86_64 "$@"\n')
    qemu.chmod(qemu.stat().st_mode | stat.S_IXUSR)
    config = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock")
    daemon = daemon_factory(config.replace("[vm]\n", f'[vm]\nqemu = "{qemu}"\n', 1))
    events = daemon.events(["run", "state"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "booting", 30)
    assert daemon.call("stop") == {"cancelled": True, "run_id": started["run_id"]}
    end = events.run_end(60)
    assert (end["run_id"], end["outcome"]) == (started["run_id"], "cancelled")
    assert end["reason"] == "cancelled by nixvmctl stop"
    events.close()
    daemon.stop()
    log = daemon.text_log()
    assert "Task exception was never retrieved" not in log
    assert "Traceback" not in log
