"""Regressions first (issue 10, acceptance 4) with real parts: the direct backend, the host root
shared into the guest, the stand-in fstests tree, a real session bus and notification server.

Run 1 runs the group burn/cpu (check's selection, expanded by nixvmd from the tree's
group.list): burn/001 and 002 pass, burn/003 fails, the others are not run (burn.list has no
line for them). Before run 2, burn.list makes burn/002 fail too and the list gains hang/001,
which never ends. Run 2 starts with burn/003 (it failed last time), the rest of the group in
check's order, and its first regression, burn/002, is published — event, status, desktop
notification — while the run goes on; only then is the run stopped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import KernelTree, SampleKernel, write_config
from tests.desktop import NotificationServer
from tests.e2e.test_xfstests import Start, _config, fstests_dir

__all__ = ["fstests_dir"]  # a fixture used here

pytestmark = pytest.mark.vm

GROUP = [f"burn/{n:03d}" for n in range(1, 31)]  # tests/burn/group.list: all in group cpu


def _fstests_order(console: str) -> list[str]:
    """The tests in the order check ran them, from its `run fstests` kmsg lines."""
    return re.findall(r"run fstests (\S+) at ", console)


def test_the_last_failure_runs_first_and_the_first_regression_is_news_while_the_run_goes_on(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,
    desktop_notifications: NotificationServer,
) -> None:
    state = tmp_path / "state"
    sock = short_tmp / "ctl.sock"
    (fstests_dir / "burn.list").write_text("burn/001 1 pass\nburn/002 1 pass\nburn/003 1 fail\n")
    first = _config(kernel_tree, cloud_kernel, state, sock, fstests_dir, 'args = ["-g", "burn/cpu"]')
    daemon = daemon_factory(first)
    events = daemon.events(["run", "test", "regression"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    one = state / "runs" / end["run_id"]
    assert end["outcome"] == "failed", daemon.text_log()
    # No earlier run, nothing first: check runs its group in its own order.
    assert _fstests_order((one / "console.log").read_text(errors="replace")) == GROUP

    # Run 2: burn/002 now fails (a regression), hang/001 keeps the run going; notifications on.
    (fstests_dir / "burn.list").write_text("burn/001 1 pass\nburn/002 1 fail\nburn/003 1 fail\n")
    second = _config(
        kernel_tree, cloud_kernel, state, sock, fstests_dir, 'args = ["-g", "burn/cpu", "hang/001"]'
    )
    write_config(daemon.config, second.replace("[notify]\non = []\n", ""))
    start = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", timeout=60)
    run_id = start["run_id"]
    running = events.wait_for(lambda e: e["event"] == "test" and e["run_id"] == run_id and e["test"], 600)
    assert running["test"] == "burn/003"  # it failed last time: first

    found = events.wait_for(lambda e: e["event"] in ("regression", "run"), timeout=600)
    assert found["event"] == "regression", found  # before the run's end
    build = f"{cloud_kernel.release} #1"
    assert (found["run_id"], found["test"], found["build"]) == (run_id, "burn/002", build)
    assert found["headline"].startswith("output mismatch at line 2"), found
    status = daemon.status()
    assert status["state"] == "testing" and status["current"]["run_id"] == run_id
    assert status["current"]["first_regression"]["test"] == "burn/002"

    note = desktop_notifications.next(timeout_s=60)
    assert note["summary"] == f"first regression: burn/002 on {build}, run continues"
    assert note["urgency"] == "CRITICAL"
    events.wait_for(lambda e: e["event"] == "test" and e["test"] == "hang/001", timeout=600)
    assert daemon.status()["state"] == "testing"  # the run is still going (hang/001)

    daemon.call("stop")
    end = events.run_end(timeout=120)
    assert (end["run_id"], end["outcome"]) == (run_id, "cancelled")
    console = (state / "runs" / run_id / "console.log").read_text(errors="replace")
    # Without --exact-order check would sort the list: burn/001 first.
    assert _fstests_order(console) == ["burn/003", "burn/001", "burn/002", *GROUP[3:], "hang/001"]
    assert "first regression: burn/002" in daemon.text_log()
    events.close()
