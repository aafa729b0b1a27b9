"""Fixtures for a real desktop session: a private D-Bus session bus, Xvfb and dunst on them."""

from __future__ import annotations

import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from jeepney import MatchRule, Message, message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
STARTUP_TIMEOUT_S = 10.0

# No <servicedir>: nothing on this bus is activatable, so a test decides whether a
# notification server exists (Debian's session.conf would activate dunst by itself).
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# The machine's own dunstrc must not change what the tests see; identical notifications
# would otherwise be stacked into one.
DUNSTRC = """[global]
    stack_duplicates = false
    idle_threshold = 0
"""


@dataclass
class SessionBus:
    """A private dbus-daemon: `address` is what DBUS_SESSION_BUS_ADDRESS should say."""

    address: str
    process: subprocess.Popen[bytes]

    def environ(self) -> dict[str, str]:
        """os.environ pointed at this bus (and at no X display)."""
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env


@dataclass
class NotificationServer:
    """dunst on a SessionBus; `next()` returns each notification dunst received, as it saw it.

    A notification is a dict of dunst's `-print` fields: summary, body, urgency (LOW, NORMAL,
    CRITICAL), id, appname, category, desktop_entry, ...
    """

    process: subprocess.Popen[str]
    bus: SessionBus
    received: queue.Queue[dict[str, str]] = field(default_factory=queue.Queue)

    def next(self, timeout_s: float = 10.0) -> dict[str, str]:
        """The next notification dunst received; fails the test if none comes in time."""
        try:
            return self.received.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"dunst received no notification within {timeout_s}s")


def _terminate(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_line(stream: IO[bytes], timeout_s: float) -> bytes:
    """One line from a pipe, or b"" if the writer closed it or the deadline passed."""
    deadline = time.monotonic() + timeout_s
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return b""
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        data += chunk
    return data


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """An Xvfb display for the whole session (dunst needs one to draw on); e.g. ":5"."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    # -displayfd: Xvfb picks a free display and writes its number once it accepts clients.
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as ready:
            number = _read_line(ready, STARTUP_TIMEOUT_S).strip()
        if not number:
            _terminate(process)
            assert process.stderr is not None
            pytest.fail(f"Xvfb did not start: {process.stderr.read().decode(errors='replace')}")
        yield f":{number.decode()}"
    finally:
        _terminate(process)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def session_bus() -> Iterator[SessionBus]:
    """A private session bus with nothing activatable on it, ended after the test."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (apt-get install dbus)")
    # A short path of our own: pytest's tmp_path can exceed the 108 bytes of a socket path.
    directory = Path(tempfile.mkdtemp(prefix="nixvmd-bus-"))
    config = directory / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=directory / "bus"))
    process = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        address = _read_line(process.stdout, STARTUP_TIMEOUT_S).decode().strip()
        if not address:
            _terminate(process)
            assert process.stderr is not None
            pytest.fail(f"dbus-daemon did not start: {process.stderr.read().decode()}")
        yield SessionBus(address=address, process=process)
    finally:
        _terminate(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def notification_server(
    session_bus: SessionBus, x_display: str, tmp_path: Path
) -> Iterator[NotificationServer]:
    """dunst serving org.freedesktop.Notifications on `session_bus`, ready when yielded."""
    if shutil.which("dunst") is None:
        pytest.skip("dunst is not installed (apt-get install dunst)")
    dunstrc = tmp_path / "dunstrc"
    dunstrc.write_text(DUNSTRC)
    env = session_bus.environ()
    env["DISPLAY"] = x_display
    with open_dbus_connection(bus=session_bus.address) as bus:
        # Subscribe before dunst starts, so the moment it takes the name cannot be missed.
        rule = MatchRule(
            type="signal",
            sender="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
            member="NameOwnerChanged",
        )
        rule.add_arg_condition(0, NOTIFICATIONS_NAME)
        bus.send_and_get_reply(message_bus.AddMatch(rule), timeout=STARTUP_TIMEOUT_S)
        owner_changes = bus.filter(rule)
        process = subprocess.Popen(
            ["dunst", "-config", str(dunstrc), "-print"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            encoding="utf-8",
            errors="replace",
        )
        server = NotificationServer(process=process, bus=session_bus)
        reader = threading.Thread(target=_collect_notifications, args=(server,), daemon=True)
        reader.start()
        try:
            _wait_for_name(bus, owner_changes.queue, process)
            yield server
        finally:
            _terminate(process)
            reader.join(timeout=5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def desktop_notifications(
    notification_server: NotificationServer, monkeypatch: pytest.MonkeyPatch
) -> NotificationServer:
    """`notification_server` as this test's desktop: daemons started in the test find its bus."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", notification_server.bus.address)
    return notification_server


def _wait_for_name(
    bus: DBusConnection, owner_changes: deque[Message], process: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"dunst exited with {process.returncode}: {process.stderr.read()}")
        if remaining <= 0:
            pytest.fail(f"dunst did not own {NOTIFICATIONS_NAME} within {STARTUP_TIMEOUT_S}s")
        try:
            # Short slices only so that a dunst that dies is noticed at once.
            signal = bus.recv_until_filtered(owner_changes, timeout=min(remaining, 0.25))
        except TimeoutError:
            continue
        _name, _old, new_owner = signal.body
        if new_owner:
            return


def _collect_notifications(server: NotificationServer) -> None:
    """Parse dunst's `-print` blocks ("{", "\\tkey: value" lines, "}") into dicts."""
    assert server.process.stdout is not None
    current: dict[str, str] | None = None
    last_key = ""
    for line in server.process.stdout:
        line = line.rstrip("\n")
        if line == "{":
            current, last_key = {}, ""
        elif line == "}" and current is not None:
            server.received.put({k: _unquote(v) for k, v in current.items()})
            current = None
        elif current is not None and line.startswith("\t") and ": " in line:
            last_key, _, value = line[1:].partition(": ")
            current[last_key] = value
        elif current is not None and last_key:
            # A value with newlines (body, formatted) goes on over unindented lines.
            current[last_key] += "\n" + line


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value
