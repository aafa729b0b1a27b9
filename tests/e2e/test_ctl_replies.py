"""nixvmctl stop, pause, run and resume answer in words (--json keeps the daemon's reply).

A real daemon boots Debian's cloud kernel; each run is cancelled while it boots, so the test
sees what a user typing these commands sees, without waiting for a suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

pytestmark = pytest.mark.vm


def test_stop_pause_run_and_resume_say_what_happened(
    daemon_factory: Callable[[str], DaemonProcess],
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    sock = short_tmp / "ctl.sock"
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", sock))
    events = daemon.events(["run"])

    def ctl(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), done
        return done.stdout

    def started() -> str:
        event = events.wait_for(lambda e: e["event"] == "run" and e.get("phase") == "start", 120)
        run_id: str = event["run_id"]
        return run_id

    try:
        kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
        first = started()
        assert ctl("stop") == f"cancelled run {first}\n"
        assert events.run_end()["outcome"] == "cancelled"
        assert ctl("stop") == "nothing was running\n"
        assert json.loads(ctl("stop", "--json")) == {"cancelled": False, "run_id": None}

        assert ctl("pause") == "paused: changes are noted, nothing starts until nixvmctl resume\n"
        release = daemon.status()["kernel"]["release"]
        assert ctl("run", "--tests", "t1", "t2") == f"run requested: new run with {release} (tests: t1, t2)\n"
        second = started()
        assert ctl("stop") == f"cancelled run {second}\n"
        assert events.run_end()["outcome"] == "cancelled"
        assert ctl("resume") == "resumed; nothing changed while paused\n"
    finally:
        events.close()
