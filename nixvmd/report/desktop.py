"""Desktop notifications over D-Bus: the session bus, the notification server, one id per kind of news.

What a notification says and which runs make one is notification.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Collection, Mapping
from typing import Any

from jeepney import DBusAddress, HeaderFields, Message, MessageType, new_method_call
from jeepney.io.asyncio import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from nixvmd.report.notification import (
    DEFAULT_TRIGGERS,
    EventKind,
    Notification,
    describe_first_regression,
    describe_run,
    triggered_events,
)
from nixvmd.results.first_regression import FirstRegression

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

    async def report_first_regression(
        self, found: FirstRegression, on: Collection[EventKind] = DEFAULT_TRIGGERS, key: str = "run"
    ) -> int | None:
        """Notify about a run's first regression if `on` has first-regression; the id or None.

        Same key as the run's end: that notification replaces this one.
        """
        if EventKind.FIRST_REGRESSION not in on:
            return None
        return await self.notify(describe_first_regression(found), key=key)

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
