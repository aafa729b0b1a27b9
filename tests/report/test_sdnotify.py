"""sd_notify: what arrives on a real $NOTIFY_SOCKET, and nothing at all outside systemd."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from nixvmd.report.sdnotify import SystemdNotifier, socket_address, strip_notify_environment


@dataclass
class NotifySocket:
    """A bound datagram socket standing in for the service manager's end."""

    sock: socket.socket
    env_value: str

    def receive(self, timeout_s: float = 5.0) -> dict[str, str]:
        """The next datagram as VARIABLE → value; fails the test if none arrives in time."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"no notification within {timeout_s}s")
        return dict(line.split("=", 1) for line in data.decode().split("\n"))


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A socket at a short filesystem path (socket paths are limited to 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="nixvmd-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        yield NotifySocket(sock, path)
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    """A socket in the abstract namespace, which $NOTIFY_SOCKET spells with a leading '@'."""
    name = f"nixvmd-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        yield NotifySocket(sock, "@" + name)
    finally:
        sock.close()


def test_ready_status_stopping_arrive(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.env_value})
    assert notifier.enabled
    notifier.ready(status="idle: waiting for a kernel")
    assert notify_socket.receive() == {"READY": "1", "STATUS": "idle: waiting for a kernel"}
    notifier.status("testing generic/001\n(3/10)")
    assert notify_socket.receive() == {"STATUS": "testing generic/001 (3/10)"}
    notifier.stopping()
    assert notify_socket.receive() == {"STOPPING": "1"}
    notifier.close()


def test_reloading_carries_the_monotonic_clock(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.env_value})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    message = notify_socket.receive()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_abstract_socket(abstract_notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": abstract_notify_socket.env_value})
    notifier.ready()
    assert abstract_notify_socket.receive() == {"READY": "1"}
    notifier.close()


def test_watchdog_is_fed_from_the_event_loop(notify_socket: NotifySocket) -> None:
    environ = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "200000"}
    notifier = SystemdNotifier(environ)
    assert notifier.watchdog_interval() == pytest.approx(0.1)
    arrivals: list[float] = []

    async def main() -> None:
        feeder = asyncio.create_task(notifier.feed_watchdog())
        loop = asyncio.get_running_loop()
        try:
            for _ in range(4):
                data = await asyncio.wait_for(loop.sock_recv(notify_socket.sock, 4096), 5)
                assert data == b"WATCHDOG=1"
                arrivals.append(time.monotonic())
        finally:
            feeder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await feeder

    notify_socket.sock.setblocking(False)
    asyncio.run(main())
    # Paced by the interval, not sent in a burst (with slack for scheduling jitter).
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.05 for gap in gaps), gaps
    notifier.close()


def test_watchdog_of_another_process_is_not_ours(notify_socket: NotifySocket) -> None:
    environ = {
        "NOTIFY_SOCKET": notify_socket.env_value,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    assert SystemdNotifier(environ).watchdog_interval() is None
    environ["WATCHDOG_PID"] = str(os.getpid())
    assert SystemdNotifier(environ).watchdog_interval() == 15.0
    assert SystemdNotifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval() is None


def test_no_op_outside_systemd(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    with caplog.at_level(logging.DEBUG):
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
        notifier.stopping()
        asyncio.run(asyncio.wait_for(notifier.feed_watchdog(), 5))
    assert [r for r in caplog.records if r.name.startswith("nixvmd")] == []


def test_send_failure_is_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/nixvmd/notify"})
    with caplog.at_level(logging.INFO):
        notifier.ready()
        notifier.status("x")
        notifier.stopping()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("nixvmd")]
    assert len(messages) == 1
    assert "cannot notify systemd" in messages[0]
    notifier.close()


def test_socket_addresses() -> None:
    assert socket_address("/run/user/1000/systemd/notify") == "/run/user/1000/systemd/notify"
    assert socket_address("@foo") == "\0foo"
    assert socket_address("vsock:2:1234") is None


def test_strip_notify_environment() -> None:
    environ = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1", "HOME": "/h"}
    strip_notify_environment(environ)
    assert environ == {"HOME": "/h"}
