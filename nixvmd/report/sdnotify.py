"""The systemd notify protocol (sd_notify(3)) without libsystemd: datagrams to $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

NOTIFY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(notify_socket: str) -> str | None:
    """The address to send to for a $NOTIFY_SOCKET value, or None if it is not a Unix socket.

    A leading '@' names a socket in the abstract namespace (a leading NUL byte).
    systemd ≥ 254 may also hand out `vsock:` addresses, which only a VM guest uses.
    """
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants it next to RELOADING=1."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def strip_notify_environment(environ: MutableMapping[str, str]) -> None:
    """Remove the notify variables, so that child processes (QEMU, hooks) do not inherit them.

    sd_notify(3) calls this `unset_environment`; build the notifier first.
    """
    for name in NOTIFY_ENVIRONMENT:
        environ.pop(name, None)


class SystemdNotifier:
    """Tells the service manager how the daemon is doing; a quiet no-op outside systemd.

    Sending never raises: the first failure is logged once, later ones only at debug level,
    because a daemon must not stop working just because nobody listens any more.
    """

    def __init__(self, environ: Mapping[str, str], pid: int | None = None) -> None:
        self._notify_socket = environ.get("NOTIFY_SOCKET", "")
        self._address = socket_address(self._notify_socket) if self._notify_socket else None
        self._watchdog_interval = _watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._failed_before = False
        if self._notify_socket and self._address is None:
            log.warning(
                "NOTIFY_SOCKET=%s is not a Unix socket nixvmd can use; systemd will not see nixvmd's state",
                self._notify_socket,
            )

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) is finished: READY=1, with an optional status line."""
        self.notify("READY=1", *_status_line(status))

    def status(self, text: str) -> None:
        """One line of free-form status that `systemctl --user status` shows."""
        self.notify(*_status_line(text))

    def reloading(self) -> None:
        """A reload has begun (RELOADING=1 with MONOTONIC_USEC); send ready() when it is done."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> None:
        """The daemon is shutting down: STOPPING=1."""
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Tell the service manager's watchdog that the daemon is alive: WATCHDOG=1."""
        self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None without a watchdog.

        None too when WATCHDOG_PID names another process: the watchdog is not ours then.
        """
        return self._watchdog_interval

    async def feed_watchdog(self) -> None:
        """Ping the watchdog from the event loop until cancelled; returns at once without one.

        Run it as a task of the daemon's loop: if the loop gets stuck, the pings stop and
        systemd restarts the daemon, which is the point of the watchdog.
        """
        interval = self._watchdog_interval
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def notify(self, *assignments: str) -> None:
        """Send VARIABLE=value assignments in one datagram (no-op outside systemd)."""
        if self._address is None or not assignments:
            return
        payload = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                self._socket = socket.socket(socket.AF_UNIX, kind)
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as err:
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            log.log(
                level,
                "cannot notify systemd through %s: %s; systemd will not see nixvmd's state",
                self._notify_socket,
                err,
            )

    def close(self) -> None:
        """Close the socket; later notifications open a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status_line(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # A newline would end the assignment and start a bogus one.
    return ("STATUS=" + " ".join(text.splitlines()),)


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000
