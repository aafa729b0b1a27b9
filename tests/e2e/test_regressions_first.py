"""Regressions first (issue 10, acceptance 4) with real parts: the direct backend, the host root
shared into the guest, the stand-in check, a real session bus and notification server.

Run 1 passes generic/001 and 002 and fails generic/005. Before run 2 the stand-in is told that
generic/002 fails too (its `failing` file, read from the fstests tree the guest shares) and the
list gains hang/001, which never ends. Run 2 starts with generic/005 (it failed last time), and
its first regression, generic/002, is published — event, status, desktop notification — while
hang/001 keeps the run going; only then is the run stopped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import KernelTree, SampleKernel, write_config
from tests.e2e.test_xfstests import Start, _config, fstests_dir
from tests.report.conftest import NotificationServer, notification_server, session_bus, x_display

__all__ = ["fstests_dir", "notification_server", "session_bus", "x_display"]  # fixtures used here

pytestmark = pytest.mark.vm

SECTION = """
[[xfstests.sections]]
name = "xfs"
fstyp = "xfs"
"""


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
    notification_server: NotificationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", notification_server.bus.address)
    state = tmp_path / "state"
    sock = short_tmp / "ctl.sock"
    (fstests_dir / "failing").write_text("generic/005\n")
    first = _config(
        kernel_tree,
        cloud_kernel,
        state,
        sock,
        fstests_dir,
        f'args = ["generic/005", "generic/001", "generic/002"]\n{SECTION}',
    )
    daemon = daemon_factory(first)
    events = daemon.events(["run", "test", "regression"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    one = state / "runs" / end["run_id"]
    assert end["outcome"] == "failed", daemon.text_log()
    # No earlier run, nothing first: check sorts the list as it always does.
    assert _fstests_order((one / "console.log").read_text(errors="replace")) == [
        "generic/001", "generic/002", "generic/005",
    ]  # fmt: skip

    # Run 2: generic/002 now fails (a regression), hang/001 keeps the run going; notifications on.
    (fstests_dir / "failing").write_text("generic/002\ngeneric/005\n")
    args = 'args = ["hang/001", "generic/002", "generic/005", "generic/001"]'
    second = _config(kernel_tree, cloud_kernel, state, sock, fstests_dir, f"{args}\n{SECTION}")
    write_config(daemon.config, second.replace("[notify]\non = []\n", ""))
    start = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", timeout=60)
    run_id = start["run_id"]
    running = events.wait_for(lambda e: e["event"] == "test" and e["run_id"] == run_id and e["test"], 600)
    assert running["test"] == "generic/005"  # it failed last time: first

    found = events.wait_for(lambda e: e["event"] in ("regression", "run"), timeout=600)
    assert found["event"] == "regression", found  # before the run's end
    build = f"{cloud_kernel.release} #1"
    assert (found["run_id"], found["test"], found["build"]) == (run_id, "generic/002", build)
    assert found["headline"].startswith("output mismatch at line 2"), found
    status = daemon.status()
    assert status["state"] == "testing" and status["current"]["run_id"] == run_id
    assert status["current"]["first_regression"]["test"] == "generic/002"

    note = notification_server.next(timeout_s=60)
    assert note["summary"] == f"first regression: generic/002 on {build}, run continues"
    assert note["urgency"] == "CRITICAL"
    assert daemon.status()["state"] == "testing"  # the run is still going (hang/001)
    assert daemon.status()["current"]["test"] == "hang/001"

    daemon.call("stop")
    end = events.run_end(timeout=120)
    assert (end["run_id"], end["outcome"]) == (run_id, "cancelled")
    two = state / "runs" / run_id
    console = (two / "console.log").read_text(errors="replace")
    # Without --exact-order check (and the stand-in) would sort the list: generic/001 first.
    assert _fstests_order(console) == ["generic/005", "generic/001", "generic/002", "hang/001"]
    assert "first regression: generic/002" in daemon.text_log()
    events.close()
