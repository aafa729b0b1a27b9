"""Nobody is locked out of the control socket: not by hundreds of silent connections, not by
idle ones, not by subscribers, not when the daemon runs out of file descriptors."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client, Stream
from nixvmd.daemon.control import IDLE_TIMEOUT_ENV, MAX_STREAMS
from nixvmd.errors import ControlError
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

Start = Callable[[str], DaemonProcess]

HELD = 300
REPLY_TIMEOUT = 10.0
CTL = [sys.executable, "-m", "nixvmd.ctl.main"]


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """Room in this process for HELD sockets and then some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * HELD
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def start(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> Callable[[], DaemonProcess]:
    """Starts a daemon watching an empty kernel tree: it serves the socket and never boots a VM."""
    config = direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock")
    return lambda: daemon_factory(config)


def _hold(path: Path, count: int) -> list[socket.socket]:
    """`count` connections, connected and silent, held by this process (at most 60 s to connect)."""
    held: list[socket.socket] = []
    failure: list[BaseException] = []

    def connect_all() -> None:
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                held.append(sock)
                # Blocking: a full accept queue makes us wait for the daemon, as a client would.
                sock.connect(str(path))
        except BaseException as exc:
            failure.append(exc)

    connecting = threading.Thread(target=connect_all, daemon=True)
    connecting.start()
    connecting.join(60)
    assert not connecting.is_alive(), f"the daemon took only {len(held)} of {count} connections in 60s"
    assert not failure, failure
    return held


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def _last_words(sock: socket.socket) -> dict[str, Any]:
    """The line the daemon sends before it closes `sock`, and proof that it did close it."""
    sock.settimeout(REPLY_TIMEOUT)
    data = b""
    while True:
        chunk = sock.recv(4096)  # TimeoutError here: the daemon never closed it
        if not chunk:
            break
        data += chunk
    lines = data.splitlines()
    assert len(lines) == 1, data
    message: dict[str, Any] = json.loads(lines[0])
    assert message["ok"] is False
    return message


def _ctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.run(
        [*CTL, "--socket", str(daemon.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _assert_answered_status(daemon: DaemonProcess) -> None:
    """`nixvmctl status --json` as a person would run it: it answers, with this daemon's status."""
    done = _ctl(daemon, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert daemon.proc is not None
    assert status["pid"] == daemon.proc.pid
    assert status["state"] == "idle"


def _assert_healthy(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.text_log()
    assert "Traceback" not in daemon.text_log()


def test_status_answers_with_300_silent_connections_held_open(
    start: Callable[[], DaemonProcess], enough_fds: None
) -> None:
    daemon = start()
    held = _hold(daemon.socket, HELD)
    try:
        _assert_answered_status(daemon)
        # Room was made by closing the connection idle longest, with a line saying why...
        first = _last_words(held[0])
        assert "to make room for another client" in first["error"]
        # ...never the newest: it is still open and served.
        newest = held[-1]
        newest.settimeout(REPLY_TIMEOUT)
        newest.sendall(b'{"cmd": "status"}\n')
        with newest.makefile("rb") as reader:
            reply = json.loads(reader.readline())
        assert reply["ok"] is True, reply
        assert daemon.proc is not None and reply["result"]["pid"] == daemon.proc.pid
    finally:
        _close_all(held)
    _assert_healthy(daemon)


def test_idle_connections_are_told_and_closed_but_subscribers_stay(
    start: Callable[[], DaemonProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_TIMEOUT_ENV, "1")
    daemon = start()
    events = daemon.events(["config"])
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    asked_once = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half_a_line = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for sock in (silent, asked_once, half_a_line):
            sock.settimeout(REPLY_TIMEOUT)
            sock.connect(str(daemon.socket))
        asked_once.sendall(b'{"cmd": "status"}\n')
        half_a_line.sendall(b'{"cmd": "sta')

        assert "closed after 1s without a request" in _last_words(silent)["error"]
        assert "closed after 1s without a request" in _last_words(half_a_line)["error"]
        with asked_once.makefile("rb") as reader:
            assert json.loads(reader.readline())["ok"] is True
            goodbye = json.loads(reader.readline())
            assert reader.readline() == b""
        assert "closed after 1s without a request" in goodbye["error"]

        # The subscriber was just as quiet for longer than the timeout, and still hears events.
        assert daemon.call("reload") == {"error": None}
        assert events.wait_for(lambda e: e["event"] == "config", REPLY_TIMEOUT)["ok"] is True
    finally:
        for sock in (silent, asked_once, half_a_line):
            sock.close()
        events.close()
    _assert_healthy(daemon)


def _subscribe(daemon: DaemonProcess) -> Stream:
    client = Client(daemon.socket, timeout=REPLY_TIMEOUT)
    try:
        return client.open_stream("subscribe", events=["config"])
    except BaseException:
        client.close()
        raise


def test_subscribers_have_places_of_their_own(start: Callable[[], DaemonProcess]) -> None:
    daemon = start()
    streams = [_subscribe(daemon) for _ in range(MAX_STREAMS)]
    try:
        with (
            Client(daemon.socket, timeout=REPLY_TIMEOUT) as client,
            pytest.raises(ControlError, match="too many subscriptions and console sessions"),
        ):
            client.open_stream("subscribe", events=["config"])
        # Requests still have their places, and the refused connection may go on asking.
        _assert_answered_status(daemon)
        with Client(daemon.socket, timeout=REPLY_TIMEOUT) as client:
            with pytest.raises(ControlError, match="too many subscriptions"):
                client.call("subscribe", events=["config"])
            assert client.call("status")["state"] == "idle"

        # A subscriber that hangs up frees its place without waiting for an event.
        streams.pop().sock.close()
        replacement = None
        for _ in range(1000):
            try:
                replacement = _subscribe(daemon)
                break
            except ControlError as exc:
                assert "too many subscriptions" in str(exc)
        assert replacement is not None, "the closed subscriber's place was never freed"
        streams.append(replacement)
        assert daemon.call("reload") == {"error": None}
        for stream in streams:
            event = stream.read(REPLY_TIMEOUT)
            assert event is not None and event["event"] == "config"
    finally:
        for stream in streams:
            stream.sock.close()
    _assert_healthy(daemon)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_daemon_out_of_file_descriptors_keeps_answering_and_says_so_once(
    start: Callable[[], DaemonProcess], enough_fds: None
) -> None:
    daemon = start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # A handful of descriptors to spare: the held connections run it out long before 300.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (_open_fds(pid) + 8, hard))
    held = _hold(daemon.socket, HELD)
    try:
        _assert_answered_status(daemon)
        _assert_answered_status(daemon)
    finally:
        _close_all(held)
    _assert_healthy(daemon)
    assert daemon.text_log().count("out of file descriptors") == 1, daemon.text_log()
