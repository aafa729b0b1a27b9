"""Faults a real workstation throws at the loop: a guest that halts, a QEMU killed by the
host, a daemon killed mid-run, a cancel while QEMU starts. Real daemon, QEMU and kernel."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.config.schema import NotifyEvent
from nixvmd.report.desktop import DesktopNotifier
from nixvmd.report.notification import Notification, Urgency
from tests.conftest import (
    KEPT_DISK,
    DaemonProcess,
    KernelTree,
    SampleKernel,
    another_build,
    direct_config,
    kept_disk,
)
from tests.ctl.failures import CTL, assert_failed_with_one_sentence, run_ctl
from tests.desktop import NotificationServer
from tests.processes import exits_within

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]

_SO_ACCEPTCON = 0x10000  # /proc/net/unix's flag of a listening socket
_SYS_PIDFD_GETFD = 438


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


async def _notify(note: Notification) -> int | None:
    """Send `note` the way nixvmd does, on $DBUS_SESSION_BUS_ADDRESS; the server's id."""
    notifier = DesktopNotifier()
    try:
        return await notifier.notify(note)
    finally:
        await notifier.close()


def _listener_of(pid: int, path: Path) -> socket.socket:
    """A duplicate of the socket on which process `pid` listens at `path` (pidfd_getfd(2)).

    Select on it to see a connection queued for the process, e.g. while it is stopped.
    Close it before the process dies, or the socket lives on in the test.
    """
    listening = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[7] == str(path) and int(fields[3], 16) & _SO_ACCEPTCON:
            listening.add(f"socket:[{fields[6]}]")
    fds = [fd for fd in os.listdir(f"/proc/{pid}/fd") if _link(f"/proc/{pid}/fd/{fd}") in listening]
    assert len(fds) == 1, f"process {pid} listens on {path} with {fds}"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(fds[0]), 0)
    finally:
        os.close(pidfd)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"pidfd_getfd of process {pid}'s listening socket")
    return socket.socket(fileno=fd)


def _status_while_killed(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    """`nixvmctl status --json` connected to `daemon` while it is stopped, and the daemon SIGKILLed."""
    assert daemon.proc is not None
    with _listener_of(daemon.proc.pid, daemon.socket) as listener:
        daemon.proc.send_signal(signal.SIGSTOP)
        stopped = os.waitid(os.P_PID, daemon.proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        assert stopped is not None and stopped.si_code == os.CLD_STOPPED
        asking = subprocess.Popen(
            [*CTL, "--socket", str(daemon.socket), "--timeout", "30", "status", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert select.select([listener], [], [], 60)[0], "nixvmctl did not connect"
        except BaseException:
            asking.kill()
            asking.communicate()
            raise
    daemon.proc.kill()
    stdout, stderr = asking.communicate(timeout=60)
    return subprocess.CompletedProcess(asking.args, asking.returncode, stdout, stderr)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _socket_dir_of(record: dict[str, Any]) -> Path:
    """The VM's socket directory, from the QEMU command line in its run record."""
    match = re.search(r"path=(/[^,]*/nixvmd-vm-[^/,]+)/qmp", " ".join(record["command"]))
    assert match, record["command"]
    return Path(match.group(1))


# The bound from the halt to the verdict; today about 1.2 s, nearly all the vmcore dump.
HALT_TO_VERDICT_S = 15


@pytest.mark.parametrize(
    ("command", "marker"),
    [("halt -f", "reboot: System halted"), ("poweroff -f", "reboot: Power down")],
    ids=["halt", "poweroff"],
)
def test_a_guest_that_halts_or_powers_off_ends_as_crashed_long_before_the_suite_timeout(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    command: str,
    marker: str,
) -> None:
    state = tmp_path / "state"
    daemon = daemon_factory(
        direct_config(
            kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", command=command, timeout="10m"
        )
    )
    events = daemon.events(["run", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(240)
    events.close()
    # From the kernel's last words to the verdict, both stamped by the daemon as it saw them;
    # waiting out suite.timeout (10 minutes) would overrun this bound by far.
    halted = [e for e in events.seen if e["event"] == "console" and marker in e["line"]]
    assert halted, f"no {marker!r} on the console before the run's end"
    assert 0 <= end["time"] - halted[0]["time"] < HALT_TO_VERDICT_S
    assert end["outcome"] == "crashed"
    assert "by itself" in end["reason"]
    record = _run_json(state, end["run_id"])
    assert record["outcome"] == "crashed"
    assert marker in (state / "runs" / end["run_id"] / "console.log").read_text()


def test_a_boot_that_stalls_ends_timeout_saying_where_the_console_stopped(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    """A guest that never reaches the agent (here a shell as init, waiting on the console) is
    a boot timeout whose reason quotes the console's last line and how long ago it came."""
    state = tmp_path / "state"
    text = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock")
    text = text.replace("[kernel]\n", '[kernel]\ncmdline = "rdinit=/bin/sh"\n')
    daemon = daemon_factory(text.replace('boot_timeout = "120s"', 'boot_timeout = "15s"'))
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(240)
    events.close()
    assert end["outcome"] == "timeout"
    found = re.fullmatch(
        r"the guest agent did not report ready within vm\.boot_timeout \(15s\); "
        r'the console\'s last line came (\d+)s before: "(.*)"; see console\.log',
        end["reason"],
    )
    assert found, end["reason"]
    console = (state / "runs" / end["run_id"] / "console.log").read_text(errors="replace")
    lines = [line.strip() for line in console.splitlines() if line.strip()]
    assert "Run /bin/sh as init process" in console
    assert found[2] in lines[-2:], (found[2], lines[-5:])
    assert int(found[1]) <= 15


def test_a_run_that_errors_after_a_pass_has_no_regressions(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    desktop_notifications: NotificationServer,
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
        ).replace("[notify]\non = []\n", f"[notify]\non = {json.dumps(list(NotifyEvent))}\n")
    )
    events = daemon.events(["run", "console"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    assert events.run_end()["outcome"] == "passed"
    build = f"{cloud_kernel.release} #1"
    assert desktop_notifications.next(30)["summary"] == f"{build}: passed (1 test)"

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

    # Every event a run can notify about is on: the error run's one notification says nixvmd
    # could not test the kernel, never that the kernel regressed.
    note = desktop_notifications.next(30)
    assert note["summary"].startswith(f"nixvmd could not test {cloud_kernel.release} #2 (QEMU exited")
    assert "regress" not in (note["summary"] + note["body"]).lower()
    assert daemon.stop() == 0  # nothing more comes from it...
    marker = Notification("the test's own, after the daemon's", "", Urgency.LOW)
    assert asyncio.run(_notify(marker)) is not None
    assert desktop_notifications.next(30)["summary"] == marker.summary  # ...and nothing came before this


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
    # A nixvmctl that connected (the kernel queued it while the daemon was stopped) when the
    # daemon dies: dropped, said in one sentence, long before its timeout. Its request may or
    # may not have gone out by then ("reset ... without answering", "closed ... before taking").
    dropped = _status_while_killed(daemon)
    assert_failed_with_one_sentence(dropped, "the daemon", "the connection")
    assert "within" not in dropped.stderr
    daemon.stop()
    assert exits_within(qemu, 30), "QEMU outlived its daemon"  # PR_SET_PDEATHSIG
    # Its socket file is left behind, and nothing listens on it: refused, in one sentence.
    assert daemon.socket.is_socket()
    for how in ([], ["--json"]):
        assert_failed_with_one_sentence(run_ctl(daemon.socket, "status", *how), "no nixvmd is listening")
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
