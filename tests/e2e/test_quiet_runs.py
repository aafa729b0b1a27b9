"""Quiet runs with real parts: no run twice on the same kernel, known failures pass in
silence, builds named by build number and commit (daemon process, QEMU, dunst, git)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.results.store import disks_dir
from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel, direct_config, run_once
from tests.desktop import NotificationServer

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
CTL = [sys.executable, "-m", "nixvmd.ctl.main"]
KNOWN = "echo failing as the baseline expects; exit 3"


def _logs(daemon: DaemonProcess) -> str:
    return "\n".join(daemon.call("logs")["lines"])


def _log_line(events: EventStream, text: str, timeout: float = 30) -> str:
    line: str = events.wait_for(lambda e: e["event"] == "log" and text in e["line"], timeout)["line"]
    return line


def _git(tree: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _git_tree(tree: KernelTree) -> str:
    """Make the kernel tree a git work tree with one commit (the build output stays untracked)."""
    (tree.root / "Makefile").write_text("VERSION = 6\n")
    _git(tree.root, "init", "-q")
    _git(tree.root, "add", "Makefile")
    _git(tree.root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "v6")
    return _git(tree.root, "rev-parse", "HEAD")


def _known_failure_config(tree: KernelTree, kernel: SampleKernel, state: Path, sock: Path) -> str:
    """A failing command that the baseline lists; notifications as by default (no [notify])."""
    (state / "baseline").mkdir(parents=True)
    (state / "baseline" / "command").write_text(json.dumps(KNOWN) + "\n")
    text = direct_config(tree, kernel, state, sock, command=KNOWN)
    return text.replace("[notify]\non = []\n", "")


def test_a_restart_with_the_same_kernel_starts_no_run_until_asked(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    text = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock")
    config = tmp_path / "nixvmd.toml"
    config.write_text(text)
    once = run_once(config, "--json")
    assert once.returncode == 0, once.stderr
    once_id = json.loads(once.stdout)["id"]

    # The daemon decides at startup, before it says READY: by now it has decided.
    daemon = daemon_factory(text)
    why = f"kernel {cloud_kernel.release} #1 unchanged since run {once_id} (passed); nixvmctl run"
    assert why in _logs(daemon), daemon.text_log()
    status = daemon.status()
    assert status["current"] is None and status["last_run"]["id"] == once_id
    assert status["kernel"]["build"] == f"{cloud_kernel.release} #1"

    events = daemon.events()
    asked = subprocess.run(
        [*CTL, "--socket", str(daemon.socket), "run"], capture_output=True, text=True, timeout=60
    )
    assert asked.returncode == 0, asked.stderr
    again = events.run_end()
    assert again["outcome"] == "passed", daemon.text_log()
    events.close()
    # Had the restart started a run, it would be here (cancelled by the request, or before it).
    assert [r["id"] for r in daemon.call("history")] == [once_id, again["run_id"]]

    assert daemon.stop() == 0
    restarted = daemon_factory(text)  # the same state dir: the requested run's verdict holds
    assert f"unchanged since run {again['run_id']} (passed)" in _logs(restarted)
    assert [r["id"] for r in restarted.call("history")] == [once_id, again["run_id"]]
    assert restarted.stop() == 0  # before the factory looks for the first daemon's socket


def _go(state: Path, run_id: str) -> None:
    """Let the run waiting for GO on its scratch disk (a fresh one per run) go on."""
    with (disks_dir(state / "runs" / run_id) / "scratch.img").open("r+b") as disk:
        disk.write(b"GO")


def test_the_same_bytes_again_start_no_run_and_do_not_cancel_the_running_one(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    # The guest waits until the host writes GO at the start of the scratch disk (read past
    # the guest's page cache), so the run is surely still going while the image is rewritten.
    command = (
        "echo waiting-for-go; "
        "until dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | grep -q GO; do sleep 0.2; done"
    )
    sock = short_tmp / "ctl.sock"
    daemon = daemon_factory(
        direct_config(kernel_tree, cloud_kernel, state, sock, command=command, timeout="10m")
    )
    events = daemon.events(["run", "console", "log"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "waiting-for-go", 240)

    testing = f"kernel {cloud_kernel.release} #1 unchanged: run {started['run_id']} is testing it"
    kernel_tree.write_in_place(image)  # `make` relinking nothing new, or `cp` of the same file
    assert testing in _log_line(events, "is testing it")
    kernel_tree.replace_atomically(image)  # `make install`-style
    assert testing in _log_line(events, "is testing it")
    assert daemon.status()["current"]["run_id"] == started["run_id"]

    _go(state, started["run_id"])
    end = events.run_end()
    assert (end["run_id"], end["outcome"]) == (started["run_id"], "passed"), daemon.text_log()

    kernel_tree.write_in_place(image)
    tested = f"unchanged since run {started['run_id']} (passed); nixvmctl run to test it again"
    _log_line(events, tested)
    assert [r["id"] for r in daemon.call("history")] == [started["run_id"]]

    daemon.call("run")  # asked for: the same kernel runs again, on fresh disks of its own
    again = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "waiting-for-go", 240)
    _go(state, again["run_id"])
    asked = events.run_end()
    assert asked["outcome"] == "passed"
    assert [r["id"] for r in daemon.call("history")] == [started["run_id"], asked["run_id"]]
    assert all(e.get("outcome") != "cancelled" for e in events.seen if e["event"] == "run")
    events.close()


def test_known_failures_pass_quietly_and_are_marked_in_status_and_results(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    desktop_notifications: NotificationServer,
) -> None:
    commit = _git_tree(kernel_tree)
    build = f"{cloud_kernel.release} #1 {commit[:7]}"
    state, sock = tmp_path / "state", short_tmp / "ctl.sock"
    text = _known_failure_config(kernel_tree, cloud_kernel, state, sock)
    daemon = daemon_factory(text)
    events = daemon.events()
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    known = events.run_end()
    assert (known["outcome"], known["failed"], known["known_failures"]) == ("passed", 1, [KNOWN])
    assert known["regressions"] == [] and known["build"] == build
    logs = _logs(daemon)
    assert f"new kernel {build} (" in logs and f"run {known['run_id']}: command on {build}" in logs
    last = daemon.status()["last_run"]
    assert (last["outcome"], last["known_failures"]) == ("passed", [KNOWN])

    status = subprocess.run(
        [*CTL, "--socket", str(sock), "status"], capture_output=True, text=True, timeout=60
    )
    assert f"passed on {build}" in status.stdout and f"known failures: {KNOWN}" in status.stdout
    results = subprocess.run(
        [*CTL, "--socket", str(sock), "results", known["run_id"]], capture_output=True, text=True, timeout=60
    )
    assert f"FAIL {KNOWN} (known failure)" in results.stdout, results.stdout

    # A failure that is news: its notification is the first one dunst gets.
    (tmp_path / "nixvmd.toml").write_text(text.replace(json.dumps(KNOWN), '"exit 4"'))
    news = events.run_end()
    assert (news["outcome"], news["regressions"]) == ("failed", ["exit 4"])
    note = desktop_notifications.next(timeout_s=30)
    assert note["summary"] == f"{build}: 1 regression — exit 4"
    events.close()


def test_once_with_only_known_failures_exits_0_and_names_the_build_by_its_commit(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    commit = _git_tree(kernel_tree)
    (kernel_tree.root / "Makefile").write_text("VERSION = 7\n")  # edited since the commit
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    state = tmp_path / "state"
    config = tmp_path / "nixvmd.toml"
    config.write_text(_known_failure_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock"))

    done = run_once(config, "--json")

    assert done.returncode == 0, done.stderr
    record: dict[str, Any] = json.loads(done.stdout)
    assert (record["outcome"], record["known_failures"], record["exit_status"]) == ("passed", [KNOWN], 3)
    assert record["kernel_build"] == "#1"
    assert record["git"] == {"commit": commit, "dirty": True}
    build = f"{cloud_kernel.release} #1 {commit[:7]}-dirty"
    assert record["build"] == build
    assert json.loads((state / "runs" / record["id"] / "run.json").read_text())["build"] == build
    assert f"run {record['id']}: command on {build}" in done.stderr
