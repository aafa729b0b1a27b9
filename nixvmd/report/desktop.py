"""Desktop notifications about finished runs: what to say, when, over D-Bus; and the user's hook."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import stat
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jeepney import DBusAddress, HeaderFields, Message, MessageType, new_method_call
from jeepney.io.asyncio import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from nixvmd.config.schema import NotifyEvent
from nixvmd.errors import ConfigError

log = logging.getLogger(__name__)

NO_BUS = "no desktop session bus; desktop notifications are off"
NO_SERVER = "no notification server on the desktop session bus; desktop notifications are off"
BACK_ON = "desktop notifications are on again"

NOTIFICATIONS = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)
# What the bus answers when nobody owns the name and nothing can be activated for it.
_NO_SERVER_ERRORS = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
}
_LIST_AT_MOST = 3
_BODY_LINE = 160
"""A failure's line in the body is cut here: servers show a few short lines, not a log."""


class Urgency(enum.IntEnum):
    """The freedesktop `urgency` hint; servers keep CRITICAL on screen until dismissed."""

    LOW = 0
    NORMAL = 1
    CRITICAL = 2


EventKind = NotifyEvent
"""What about a run can trigger a notification; declared with the config, which checks `notify.on`."""

DEFAULT_TRIGGERS = frozenset(EventKind) - {EventKind.PASS}

_OUTCOME_EVENT = {
    "passed": EventKind.PASS,
    "failed": EventKind.FAIL,
    "crashed": EventKind.CRASH,
    "timeout": EventKind.TIMEOUT,
    "error": EventKind.BUILD_ERROR,
}


@dataclass(frozen=True)
class Notification:
    """One desktop notification: a one-line summary, a plain-text body and an urgency."""

    summary: str
    body: str
    urgency: Urgency


def parse_triggers(on: Iterable[str]) -> frozenset[EventKind]:
    """The event kinds of a config `on` list; ConfigError naming the valid ones otherwise."""
    kinds = set()
    for name in on:
        try:
            kinds.add(EventKind(name))
        except ValueError:
            valid = ", ".join(f'"{kind}"' for kind in EventKind)
            raise ConfigError([f'notify: unknown event "{name}" in `on`; use some of {valid}']) from None
    return frozenset(kinds)


def run_events(run: Mapping[str, Any]) -> frozenset[EventKind]:
    """Everything a run summary (status JSON `last_run`) is an instance of.

    A cancelled run was superseded by a newer kernel, so it is nothing to tell anyone about.
    Known failures are no event: a run whose only failures are known ones is `passed`.
    A run nixvmd could not carry out (`error`) is a build-error, never a regression or a fix,
    whatever its record says: the machinery's failure is not the kernel's.
    """
    outcome = run.get("outcome")
    if outcome not in _OUTCOME_EVENT:
        return frozenset()
    kinds = {_OUTCOME_EVENT[outcome]}
    if outcome == "error":
        return frozenset(kinds)
    if run.get("regressions"):
        kinds.add(EventKind.REGRESSION)
    if run.get("fixes"):
        kinds.add(EventKind.FIXED)
    return frozenset(kinds)


def triggered_events(
    run: Mapping[str, Any], on: Collection[EventKind] = DEFAULT_TRIGGERS
) -> frozenset[EventKind]:
    """The events of `run` the user asked to hear about; notify when this is not empty."""
    return run_events(run) & frozenset(on)


def describe_run(run: Mapping[str, Any]) -> Notification:
    """The notification text for a run summary, e.g. "6.8.0-rc3 #7 a1b2c3d: 2 regressions — generic/475".

    The kernel is named by its build (release, build number, commit) so that two builds of
    one release can be told apart. The body counts the tests and names the first failed ones
    with their headlines (the summary's `failures`, regressions first), so the notification
    says why without a click. Urgency is critical for a crash or a regression, normal for
    other failures, low otherwise.
    """
    kernel = run.get("build") or run.get("kernel_version") or "kernel"
    outcome = run.get("outcome") or "unknown"
    reason = str(run.get("reason") or "")
    regressions = list(run.get("regressions") or [])
    fixes = list(run.get("fixes") or [])
    passed, failed = int(run.get("passed") or 0), int(run.get("failed") or 0)
    skipped = int(run.get("skipped") or 0)

    because = f" ({reason})" if reason else ""
    urgency = Urgency.NORMAL
    if outcome == "error":
        summary = f"nixvmd could not test {kernel}{because}"
        regressions, fixes = [], []
    elif outcome == "crashed":
        summary, urgency = f"{kernel}: crashed{because}", Urgency.CRITICAL
    elif regressions:
        summary = f"{kernel}: {_plural(len(regressions), 'regression')} — {_names(regressions)}"
        urgency = Urgency.CRITICAL
    elif outcome == "failed":
        summary = f"{kernel}: {_plural(failed, 'test')} failed"
    elif outcome == "timeout":
        summary = f"{kernel}: timed out{because}"
    elif outcome == "passed":
        summary = f"{kernel}: passed ({_plural(passed, 'test')})"
        if fixes:
            summary = f"{kernel}: passed, {len(fixes)} fixed — {_names(fixes)}"
        urgency = Urgency.LOW
    else:
        summary, urgency = f"{kernel}: {outcome}", Urgency.LOW

    lines = [f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")]
    if regressions:
        lines.append("Regressions: " + ", ".join(regressions))
    if fixes:
        lines.append("Fixed: " + ", ".join(fixes))
    if outcome != "error":
        lines += _failure_lines(run.get("failures") or [], failed)
    if reason and reason not in summary:
        lines.append(reason)
    if run.get("id"):
        lines.append(f"nixvmctl results {run['id']}")
    return Notification(summary=summary, body="\n".join(lines), urgency=urgency)


def _failure_lines(failures: Sequence[Mapping[str, Any]], failed: int) -> list[str]:
    """`name: headline` for the first few failures, and how many more there are."""
    shown = list(failures)[:_LIST_AT_MOST]
    lines = []
    for failure in shown:
        name, headline = str(failure.get("name") or "?"), str(failure.get("headline") or "")
        line = f"{name}: {headline}" if headline else name
        lines.append(line if len(line) <= _BODY_LINE else line[: _BODY_LINE - 1] + "…")
    more = max(failed, len(failures)) - len(shown)
    if shown and more > 0:
        lines.append(f"and {more} more")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LIST_AT_MOST])
    rest = len(names) - _LIST_AT_MOST
    return shown + (f" and {rest} more" if rest > 0 else "")


def session_bus_address(environ: Mapping[str, str]) -> str | None:
    """The session bus address: $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus if it exists.

    The fallback is what sd-bus does; a systemd user service often has no address variable.
    """
    address = environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        return address
    runtime_dir = environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir:
        path = os.path.join(runtime_dir, "bus")
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return f"unix:path={path}"
    return None


def escape_markup(text: str) -> str:
    """Escape what a server that renders body markup would otherwise take for tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class DesktopNotifier:
    """Sends notifications to the desktop's notification server over the session bus.

    It connects on first use. Without a session bus or a notification server it logs one line
    and stays quiet; it keeps trying on later notifications (the desktop session may start
    after the daemon) and says so once when notifications work again. Each `key` keeps the id
    the server returned, so the next notification for the same key replaces the previous one
    instead of piling up. Nothing here raises because the desktop is unreachable.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        app_name: str = "nixvmd",
        app_icon: str = "",
        category: str | None = None,
        desktop_entry: str | None = None,
        expire_timeout_ms: int = -1,
        timeout_s: float = 5.0,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._app_name = app_name
        self._app_icon = app_icon
        self._category = category
        self._desktop_entry = desktop_entry
        self._expire_timeout_ms = expire_timeout_ms
        self._timeout_s = timeout_s
        self._connection: DBusConnection | None = None
        self._body_markup: bool | None = None
        self._ids: dict[str, int] = {}
        self._off: str | None = None
        self._lock = asyncio.Lock()

    async def report_run(
        self,
        run: Mapping[str, Any],
        on: Collection[EventKind] = DEFAULT_TRIGGERS,
        key: str = "run",
    ) -> int | None:
        """Notify about a finished run if the user asked for one of its events; the id or None."""
        if not triggered_events(run, on):
            return None
        return await self.notify(describe_run(run), key=key)

    async def notify(self, note: Notification, *, key: str = "run") -> int | None:
        """Show `note`, replacing the last one sent with this key; the server's id, or None."""
        async with self._lock:
            # A second try covers a bus that restarted since the last notification.
            for _ in range(2):
                connection = await self._connect()
                if connection is None:
                    return None
                try:
                    notification_id = await self._send(connection, note, key)
                except DBusErrorResponse as err:
                    self._body_markup = None
                    if err.name in _NO_SERVER_ERRORS:
                        self._turn_off(NO_SERVER)
                    else:
                        self._turn_off(f"the notification server refused a notification: {err}")
                    return None
                except (OSError, EOFError, TimeoutError):
                    await self._disconnect()
                    continue
                self._ids[key] = notification_id
                if self._off is not None:
                    log.info(BACK_ON)
                    self._off = None
                return notification_id
            self._turn_off(NO_BUS)
            return None

    async def close(self) -> None:
        """Drop the bus connection; a later notification connects again."""
        async with self._lock:
            await self._disconnect()

    async def _connect(self) -> DBusConnection | None:
        if self._connection is not None:
            return self._connection
        address = session_bus_address(self._environ)
        if address is None:
            self._turn_off(NO_BUS)
            return None
        try:
            self._connection = await asyncio.wait_for(open_dbus_connection(address), self._timeout_s)
        except (OSError, EOFError, TimeoutError, ValueError, RuntimeError) as err:
            log.debug("cannot connect to the session bus at %s: %s", address, err)
            self._turn_off(NO_BUS)
            return None
        return self._connection

    async def _send(self, connection: DBusConnection, note: Notification, key: str) -> int:
        if self._body_markup is None:
            reply = await self._call(connection, new_method_call(NOTIFICATIONS, "GetCapabilities"))
            self._body_markup = "body-markup" in reply[0]
        body = escape_markup(note.body) if self._body_markup else note.body
        hints: dict[str, tuple[str, Any]] = {"urgency": ("y", int(note.urgency))}
        if self._category:
            hints["category"] = ("s", self._category)
        if self._desktop_entry:
            hints["desktop-entry"] = ("s", self._desktop_entry)
        message = new_method_call(
            NOTIFICATIONS,
            "Notify",
            "susssasa{sv}i",
            (
                self._app_name,
                self._ids.get(key, 0),
                self._app_icon,
                note.summary,
                body,
                [],
                hints,
                self._expire_timeout_ms,
            ),
        )
        reply = await self._call(connection, message)
        return int(reply[0])

    async def _call(self, connection: DBusConnection, message: Message) -> tuple[Any, ...]:
        reply = await asyncio.wait_for(_send_and_get_reply(connection, message), self._timeout_s)
        body: tuple[Any, ...] = unwrap_msg(reply)
        return body

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._body_markup = None
        if connection is not None:
            with contextlib.suppress(OSError):
                await connection.close()

    def _turn_off(self, why: str) -> None:
        if self._off is None:
            log.info(why)
        else:
            log.debug(why)
        self._off = why


async def _send_and_get_reply(connection: DBusConnection, message: Message) -> Message:
    """Send a method call and read until its reply, skipping signals and stale replies.

    One call at a time (the notifier's lock) needs no router task; jeepney 0.9's DBusRouter
    also raises KeyError instead of an error about the connection when the bus drops mid-call.
    """
    serial = next(connection.outgoing_serial)
    await connection.send(message, serial=serial)
    while True:
        reply: Message = await connection.receive()
        kind = reply.header.message_type
        if (
            kind in (MessageType.method_return, MessageType.error)
            and reply.header.fields.get(HeaderFields.reply_serial) == serial
        ):
            return reply


async def run_hook(
    command: Sequence[str] | str,
    run_json: Mapping[str, Any],
    *,
    timeout_s: float = 60.0,
    environ: Mapping[str, str] | None = None,
) -> int | None:
    """Run the user's hook with the run's JSON on stdin; its exit status, or None if it broke.

    A string runs through /bin/sh, a list is executed as is. NIXVMD_RUN_ID, NIXVMD_OUTCOME and
    NIXVMD_KERNEL_VERSION are set for hooks that only need those. A hook that fails, cannot
    start or outlives `timeout_s` (it is killed, with its children) is logged, never raised:
    a broken hook must not break the daemon.
    """
    env = dict(os.environ if environ is None else environ)
    env["NIXVMD_RUN_ID"] = str(run_json.get("id") or "")
    env["NIXVMD_OUTCOME"] = str(run_json.get("outcome") or "")
    env["NIXVMD_KERNEL_VERSION"] = str(run_json.get("kernel_version") or "")
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    shown = command if isinstance(command, str) else " ".join(command)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except (OSError, ValueError) as err:
        log.warning("hook %r could not start: %s", shown, err)
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(json.dumps(run_json).encode()), timeout_s)
    except TimeoutError:
        log.warning("hook %r still ran after %gs; killed it", shown, timeout_s)
        await _kill_session(process)
        return None
    except BaseException:
        await _kill_session(process)
        raise
    lines = output.decode(errors="replace").splitlines()
    if process.returncode == 0:
        log.debug("hook %r succeeded%s", shown, "".join(f"\n  {line}" for line in lines))
    else:
        tail = "".join(f"\n  {line}" for line in lines[-10:])
        log.warning("hook %r exited with status %s%s", shown, process.returncode, tail)
    return process.returncode


async def _kill_session(process: asyncio.subprocess.Process) -> None:
    # The hook runs in its own session, so its children go with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
