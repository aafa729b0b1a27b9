"""The fstests tree in the loop: edit a test or fstests itself, get that verdict (issue 12).

The direct backend shares the host root, so the guest runs the host's copy of the stand-in
tree (tests/fixtures/fstests); the daemon watches that copy. One daemon lifetime, four
boots: the kernel's full run; with `on_change = "off"` an edit is ignored, a reload turns
watching on; a golden-output edit runs only that test (and fails, a regression); a `make`
writing 300 files over 2 s is one full run, whose comparison the narrowed run did not
disturb; an edit of common/rc is the configured full run again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client
from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel
from tests.e2e.test_xfstests import _config as xfstests_config

pytestmark = pytest.mark.vm

STANDIN = Path(__file__).parents[1] / "fixtures" / "fstests"
ALL = ["generic/001", "generic/002", "generic/003", "generic/004"]
RUN_TIMEOUT = 600


def _config(
    tree: KernelTree, kernel: SampleKernel, state: Path, sock: Path, fstests: Path, on_change: str
) -> str:
    """test_xfstests.py's config, with all four stand-in tests and `on_change`."""
    return xfstests_config(
        tree, kernel, state, sock, fstests, f'args = {json.dumps(ALL)}\non_change = "{on_change}"'
    )


def next_run(daemon: DaemonProcess, events: EventStream, state: Path) -> dict[str, Any]:
    """The next run, from its start to its end with no other run in between: its run.json,
    and the `current.reason` status showed while it went (None if it ended first)."""
    start = events.wait_for(lambda e: e["event"] == "run", RUN_TIMEOUT)
    assert start["phase"] == "start", start
    current = daemon.status()["current"]
    end = events.wait_for(lambda e: e["event"] == "run", RUN_TIMEOUT)
    assert (end["phase"], end["run_id"]) == ("end", start["run_id"]), (start, end)
    record: dict[str, Any] = json.loads((state / "runs" / end["run_id"] / "run.json").read_text())
    shown = current["reason"] if current is not None and current["run_id"] == start["run_id"] else None
    assert shown in (None, record["cause"])
    return record


def verdicts(record: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["status"] for t in record["tests"]}


def test_edits_in_the_fstests_tree_run_what_they_concern(
    daemon_factory: Any,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    fstests = tmp_path / "fstests"
    shutil.copytree(STANDIN, fstests)
    (fstests / "src").mkdir()
    state = tmp_path / "state"
    config = _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests, "off")
    daemon: DaemonProcess = daemon_factory(config)
    events = daemon.events(["run"])

    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    full = next_run(daemon, events, state)
    assert full["cause"] == "new kernel"
    assert verdicts(full) == {
        "generic/001": "pass",
        "generic/002": "fail",
        "generic/003": "skip",
        "generic/004": "pass",
    }

    # Acceptance 4: "off" does not watch the tree; a reload switching it on watches it, runs nothing.
    golden_004 = fstests / "tests" / "generic" / "004.out"
    golden_004.write_bytes(golden_004.read_bytes())
    daemon.config.write_text(config.replace('on_change = "off"', 'on_change = "changed"'))
    assert daemon.call("reload") == {"error": None}

    # Acceptance 1 and 2: a golden-output edit runs just that test, and its failure is a regression.
    golden_001 = fstests / "tests" / "generic" / "001.out"
    golden_001.write_text("QA output created by 001\nSilence is not golden\n")
    narrowed = next_run(daemon, events, state)
    assert narrowed["cause"] == "tests/generic/001.out changed → generic/001"  # not 004: "off" ignored it
    assert narrowed["narrowed_to"] == ["generic/001"]
    assert verdicts(narrowed) == {"generic/001": "fail"}
    assert narrowed["regressions"] == ["generic/001"]
    assert "Silence is not golden" in narrowed["failures"][0]["headline"]

    # Acceptance 1: a make writing 300 files (objects and helpers) over 2 s is exactly one full run.
    for n in range(150):
        (fstests / "src" / f"t_{n}.o").write_bytes(b"object")
        (fstests / "src" / f"t_{n}").write_bytes(b"helper")
        time.sleep(2.0 / 150)  # the make's pace, not a wait for nixvmd
    made = next_run(daemon, events, state)
    assert made["outcome"] == "failed"
    assert made["cause"] == "src/t_0, src/t_1, src/t_2 and 147 more changed"
    assert made["narrowed_to"] == []
    assert sorted(verdicts(made)) == ALL
    # Acceptance 2: the narrowed run spoke only for generic/001 (failing since); the others
    # are compared with the kernel's full run: nothing new, nothing fixed, nothing missing.
    assert made["regressions"] == [] and made["fixes"] == [] and made["new_skips"] == []

    # Acceptance 1: common/rc is fstests itself: the configured full run.
    rc = fstests / "common" / "rc"
    rc.write_text(rc.read_text() + "# edited\n")
    common = next_run(daemon, events, state)
    assert common["cause"] == "common/rc changed"
    assert common["narrowed_to"] == [] and sorted(verdicts(common)) == ALL


def test_a_test_edit_during_a_full_run_waits_for_it_and_then_runs_that_test(
    daemon_factory: Any,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    """Hours of fstests are not thrown away for a test edit: the edit's tests run after the full run."""
    fstests = tmp_path / "fstests"
    shutil.copytree(STANDIN, fstests)
    state = tmp_path / "state"
    args = 'args = ["generic/001", "wait/001"]\non_change = "changed"'
    config = xfstests_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests, args)
    daemon: DaemonProcess = daemon_factory(config)
    events = daemon.events(["run", "console", "queued"])

    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    start = events.wait_for(lambda e: e["event"] == "run", RUN_TIMEOUT)
    events.wait_for(
        lambda e: e["event"] == "console" and "waiting for a line on the console" in e["line"], 600
    )

    golden = fstests / "tests" / "generic" / "001.out"
    golden.write_bytes(golden.read_bytes())  # an editor's save: same text, new mtime
    why = "tests/generic/001.out changed → generic/001"
    waiting = events.wait_for(lambda e: e["event"] in ("queued", "run"), 60)
    assert waiting["event"] == "queued", waiting  # not a cancel: no run event came first
    assert (waiting["reason"], waiting["tests"]) == (why, ["generic/001"])
    status = daemon.status()
    assert status["queued"] == {"reason": why, "tests": ["generic/001"]}
    assert status["current"]["run_id"] == start["run_id"]

    with Client(daemon.socket) as client:
        client.open_stream("console").send({"input": "go\r"})
        end = events.wait_for(lambda e: e["event"] == "run", RUN_TIMEOUT)
    assert (end["phase"], end["run_id"], end["outcome"]) == ("end", start["run_id"], "passed"), end
    full = json.loads((state / "runs" / start["run_id"] / "run.json").read_text())
    assert full["cause"] == "new kernel" and verdicts(full) == {"generic/001": "pass", "wait/001": "pass"}

    after = next_run(daemon, events, state)
    assert after["cause"] == why and after["narrowed_to"] == ["generic/001"]
    assert verdicts(after) == {"generic/001": "pass"}
    assert daemon.status()["queued"] is None
