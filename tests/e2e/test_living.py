"""Living with nixvmd (issue 5) with real parts: D-Bus and dunst, sd_notify, the event stream,
`nixvmctl console` through a pty, pause/resume/stop/run, init and install-service."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest

from nixvmd.ctl.client import Client, Stream
from nixvmd.report.desktop import NO_BUS
from tests.conftest import (
    KEPT_DISK,
    DaemonProcess,
    EventStream,
    KernelTree,
    SampleKernel,
    another_build,
    direct_config,
    kept_disk,
)
from tests.desktop import NotificationServer
from tests.report.test_unit_file import user_home, verify

Start = Callable[[str], DaemonProcess]
CTL = [sys.executable, "-m", "nixvmd.ctl.main"]


def _config(
    tree: KernelTree, kernel: SampleKernel, tmp: Path, sock: Path, *, notify_default: bool = False, **kw: Any
) -> str:
    text = direct_config(tree, kernel, tmp / "state", sock, **kw)
    if notify_default:
        # Without a [notify] section the daemon notifies about everything but passes.
        text = text.replace("[notify]\non = []\n", "")
    return text


def _run_json(tmp: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / "state" / "runs" / run_id / "run.json").read_text())
    return data


def _started(events: EventStream, timeout: float = 30) -> dict[str, Any]:
    return events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", timeout)


@pytest.mark.vm
def test_a_failed_run_notifies_the_desktop_and_a_passing_one_does_not(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    desktop_notifications: NotificationServer,
) -> None:
    # A counter on the kept disk: runs 1 and 2 pass, runs 3 and 4 fail.
    command = (
        f"k={KEPT_DISK}; n=$(head -c 1 $k | tr -cd 0-9); n=${{n:-0}}; "
        'echo $((n + 1)) | dd of=$k conv=fsync 2>/dev/null; test "$n" -lt 2'
    )
    daemon = daemon_factory(
        _config(
            kernel_tree,
            cloud_kernel,
            tmp_path,
            short_tmp / "ctl.sock",
            notify_default=True,
            command=command,
            qemu_options=kept_disk(tmp_path),
        )
    )
    events = daemon.events()
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    outcomes = [events.run_end()["outcome"]]
    for _ in range(3):
        daemon.call("run")
        outcomes.append(events.run_end()["outcome"])
    assert outcomes == ["passed", "passed", "failed", "failed"], daemon.text_log()
    # Had a passing run notified, its notification would have come first.
    regressed = desktop_notifications.next(timeout_s=30)
    assert regressed["summary"] == f"{cloud_kernel.release} #1: 1 regression — {command}"
    assert regressed["urgency"] == "CRITICAL"
    failed = desktop_notifications.next(timeout_s=30)
    assert failed["summary"] == f"{cloud_kernel.release} #1: 1 test failed"
    assert failed["urgency"] == "NORMAL"
    assert failed["appname"] == "nixvmd"
    # The same loop's notifications replace each other instead of piling up.
    assert failed["id"] == regressed["id"]
    events.close()


@pytest.mark.vm
def test_without_a_session_bus_the_daemon_says_so_once_and_carries_on(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    runtime = tmp_path / "runtime"  # an XDG_RUNTIME_DIR with no `bus` in it
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    daemon = daemon_factory(
        _config(
            kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock", notify_default=True, command="exit 3"
        )
    )
    events = daemon.events(["run", "log"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    assert events.run_end()["outcome"] == "failed"
    events.wait_for(lambda e: e["event"] == "log" and NO_BUS in e["line"], 30)
    daemon.call("run")
    assert events.run_end()["outcome"] == "failed"
    # The second failed run was reported too (quietly): its end is followed by no new line.
    daemon.call("status")
    assert daemon.text_log().count(NO_BUS) == 1, daemon.text_log()
    status = daemon.status()
    assert status["state"] == "idle" and status["last_run"]["outcome"] == "failed"
    assert "Traceback" not in daemon.text_log()
    events.close()


@pytest.mark.vm
def test_systemd_hears_ready_status_watchdog_reloading_and_stopping(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock", command="true")
    )
    assert daemon.proc is not None and daemon.notify is not None
    # Read the datagrams as systemd does, as they come: an unread socket holds only a few.
    notify = daemon.notify
    listener = threading.Thread(target=notify.wait_for, args=("STOPPING=1", 300), daemon=True)
    listener.start()
    events = daemon.events()
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    assert events.run_end()["outcome"] == "passed"
    daemon.call("reload")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    listener.join(30)
    assert not listener.is_alive(), notify.messages
    assert "cannot notify systemd" not in daemon.text_log()
    lines = [line for message in notify.messages for line in message.split("\n")]
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    statuses = [line.removeprefix("STATUS=") for line in lines if line.startswith("STATUS=")]
    release = cloud_kernel.release
    booting = next(i for i, s in enumerate(statuses) if s.startswith("booting") and release in s)
    testing = next(i for i, s in enumerate(statuses) if s.startswith("testing") and release in s)
    assert any(s.startswith("idle") for s in statuses[testing:]), statuses
    assert booting < testing
    assert lines.count("WATCHDOG=1") >= 2
    reloading = lines.index("RELOADING=1")
    assert "READY=1" in lines[reloading:]
    assert any(line.startswith("MONOTONIC_USEC=") for line in lines[reloading:])
    events.close()


@pytest.mark.vm
def test_two_subscribers_see_the_same_ordered_events_of_a_run(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    daemon = daemon_factory(_config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock"))
    kinds = ["run", "state", "test", "console"]
    first, second = daemon.events(kinds), daemon.events(kinds)
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    ends = [stream.run_end() for stream in (first, second)]
    assert ends[0] == ends[1] and ends[0]["outcome"] == "passed"

    def of_the_run(stream: EventStream) -> list[tuple[int, str]]:
        start = next(i for i, e in enumerate(stream.seen) if e["event"] == "run" and e["phase"] == "start")
        return [(e["seq"], e["event"]) for e in stream.seen[start:]]

    seen = of_the_run(first)
    assert seen == of_the_run(second)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert {"run", "state", "console"} <= {kind for _, kind in seen}
    assert not any(kind == "dropped" for _, kind in seen)
    first.close()
    second.close()


# Enough console output to fill the socket buffers of a subscriber that does not read.
FLOOD = "yes nixvmd-console-flood-line-of-some-length | head -n 20000"


@pytest.mark.vm
def test_a_stuck_subscriber_does_not_delay_runs_and_is_told_of_drops(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock", command=FLOOD)
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    alone = events.run_end()
    assert alone["outcome"] == "passed"

    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(str(daemon.socket))
    stuck.sendall(
        json.dumps({"cmd": "subscribe", "events": ["console", "state"], "limit": 10}).encode() + b"\n"
    )
    daemon.call("run")
    watched = events.run_end()
    assert watched["outcome"] == "passed"
    with_stuck = _run_json(tmp_path, watched["run_id"])["duration_s"]
    without = _run_json(tmp_path, alone["run_id"])["duration_s"]
    assert with_stuck < 1.5 * without, (with_stuck, without)
    assert daemon.status()["state"] == "idle"

    # Now it reads: the backlog, then, once its queue has room for the next event (a state
    # change it asks for whenever the stream goes quiet), how many events it missed.
    stream = Stream(stuck)
    assert (stream.read(30) or {}).get("ok") is True
    paused, pokes, dropped = False, 0, None
    while dropped is None:
        event = stream.read(5)
        if event is not None and event["event"] == "dropped":
            dropped = event
        elif event is None or event["event"] == "state":
            assert pokes < 20, "no dropped-events notice"
            paused, pokes = not paused, pokes + 1
            daemon.call("pause" if paused else "resume")
    assert dropped["count"] > 0
    stuck.close()
    events.close()


@pytest.mark.vm
def test_console_through_a_pty_types_into_a_guest_shell(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # ttyS0 is open as the shell's stdin before it says so: typed keys cannot be lost.
    command = "exec sh -c 'echo shell-ready; exec sh -i' </dev/ttyS0 >/dev/ttyS0 2>&1"
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock", command=command, timeout="300s")
    )
    events = daemon.events(["run", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    run = _started(events)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "shell-ready", 240)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "nixvmd.ctl.main", "--socket", str(daemon.socket), "console"],
        timeout=60,
        encoding="utf-8",
    )
    try:
        child.expect(f"attached to run {run['run_id']}")
        child.send("echo hello-$((6*7))\r")
        child.expect("hello-42")
        # The shell's next prompt has no newline after it: it must show all the same.
        child.send("PS1=prompt-$((6*7))-\r")
        child.expect("prompt-42-")
        child.send("\x1d")
        child.expect("detached")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    # Detaching left the run alone; it ends when stopped.
    assert daemon.status()["current"]["run_id"] == run["run_id"]
    daemon.call("stop")
    assert events.run_end(60)["outcome"] == "cancelled"
    events.close()


def test_console_with_no_guest_running_says_so(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    daemon = daemon_factory(_config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock"))
    out = subprocess.run(
        [*CTL, "--socket", str(daemon.socket), "console"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "no guest is running" in out.stderr
    with Client(daemon.socket) as client:
        assert client.call("status")["state"] == "idle"


@pytest.mark.vm
def test_paused_daemon_keeps_the_change_and_resume_runs_it_once(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, tmp_path, short_tmp / "ctl.sock", command="true")
    )
    events = daemon.events()
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    first = events.run_end()
    assert first["outcome"] == "passed"

    assert daemon.call("pause")["paused"] is True
    kernel_tree.write_in_place(another_build(image, 2))
    assert events.wait_for(lambda e: e["event"] == "kernel", 30)["ok"] is True
    status = daemon.status()
    assert (status["state"], status["paused"], status["current"]) == ("paused", True, None)
    assert [r["id"] for r in daemon.call("history")] == [first["run_id"]]
    assert not any(e["event"] == "run" and e["run_id"] != first["run_id"] for e in events.seen)

    daemon.call("resume")
    second = _started(events)
    assert events.run_end()["run_id"] == second["run_id"]
    assert [r["id"] for r in daemon.call("history")] == [first["run_id"], second["run_id"]]
    assert daemon.status()["state"] == "idle"
    events.close()


@pytest.mark.vm
def test_stop_cancels_the_run_and_run_starts_one_with_the_current_kernel(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # The first run marks the kept disk and hangs; the next one finds the mark and passes.
    command = (
        f"k={KEPT_DISK}; if head -c 4 $k | grep -q MARK; then exit 0; fi; "
        "echo MARK | dd of=$k conv=fsync 2>/dev/null; echo disk-marked; sleep 600"
    )
    daemon = daemon_factory(
        _config(
            kernel_tree,
            cloud_kernel,
            tmp_path,
            short_tmp / "ctl.sock",
            command=command,
            qemu_options=kept_disk(tmp_path),
        )
    )
    events = daemon.events(["run", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    hanging = _started(events)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "disk-marked", 240)
    assert daemon.call("stop") == {"cancelled": True, "run_id": hanging["run_id"]}
    end = events.run_end(60)
    assert (end["run_id"], end["outcome"]) == (hanging["run_id"], "cancelled")
    assert _run_json(tmp_path, hanging["run_id"])["outcome"] == "cancelled"
    assert _run_json(tmp_path, hanging["run_id"])["reason"] == "cancelled by nixvmctl stop"
    assert daemon.status()["current"] is None

    daemon.call("run")
    again = _started(events)
    assert again["kernel_version"] == cloud_kernel.release
    end = events.run_end()
    assert (end["run_id"], end["outcome"]) == (again["run_id"], "passed")
    events.close()


def test_init_writes_a_config_the_daemon_accepts_and_never_overwrites(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "Kbuild").write_text("")
    (tree / "arch/x86/boot/bzImage").write_bytes(b"")
    made = subprocess.run([*CTL, "init"], cwd=tree, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    assert "arch/x86/boot/bzImage (found)" in made.stdout
    check = subprocess.run([*CTL, "config", "check"], cwd=tree, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    written = (tree / "nixvmd.toml").read_text()
    again = subprocess.run([*CTL, "init"], cwd=tree, capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert (tree / "nixvmd.toml").read_text() == written


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(), reason="systemd-analyze not installed")
def test_install_service_writes_a_unit_systemd_accepts(tmp_path: Path) -> None:
    home = user_home(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    dry = subprocess.run(
        [*CTL, "install-service", "--dry-run"], env=env, capture_output=True, text=True, timeout=30
    )
    assert dry.returncode == 0, dry.stderr
    nixvmd = Path(sys.executable).parent / "nixvmd"
    assert f"ExecStart={nixvmd} --config" in dry.stdout
    unit = home / ".config/systemd/user/nixvmd.service"
    assert not unit.exists()
    done = subprocess.run([*CTL, "install-service"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert unit.read_text() == dry.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now nixvmd" in done.stdout
    result = verify(home, tmp_path, "nixvmd.service")
    assert (result.returncode, result.stderr) == (0, "")
