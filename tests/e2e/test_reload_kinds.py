"""A reload runs the kernel again when the run would differ ([xfstests]), not when only a report would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel, direct_config

Start = Callable[[str], DaemonProcess]


def _reload(daemon: DaemonProcess, text: str) -> None:
    daemon.config.write_text(text)
    assert daemon.call("reload")["error"] is None, daemon.text_log()


def _passed_run(events: EventStream, daemon: DaemonProcess) -> dict[str, Any]:
    start = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 60)
    end = events.run_end()
    assert end["run_id"] == start["run_id"]
    assert end["outcome"] == "passed", daemon.text_log()
    return end


@pytest.mark.vm
def test_an_xfstests_only_reload_runs_again_and_a_notify_only_reload_does_not(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    good = direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock")
    daemon = daemon_factory(good)
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    first = _passed_run(events, daemon)

    # [notify] only: the next report uses it. Had it started a run, the reload below would
    # cancel that run, and the next run to end would not be a passed one.
    notify_only = good.replace("on = []", 'on = ["crash"]')
    _reload(daemon, notify_only)
    _reload(daemon, notify_only + '\n[xfstests]\nargs = ["generic/001"]\n')
    second = _passed_run(events, daemon)

    assert [r["id"] for r in daemon.call("history")] == [first["run_id"], second["run_id"]]
    events.close()
