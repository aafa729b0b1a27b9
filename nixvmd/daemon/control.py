"""The control socket: line-delimited JSON requests and replies, and event subscriptions.

Each request is one JSON object on one line, {"cmd": "status", ...}; each reply is one line,
{"ok": true, "result": ...} or {"ok": false, "error": "..."}. A subscription turns the
connection into a stream of event lines; a session command (such as `console`) takes the
connection over entirely. Only the daemon's own user may connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from nixvmd.errors import ControlError, NixvmdError
from nixvmd.report.events import EVENT_KINDS, EventBus

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
T = TypeVar("T")
MAX_CLIENTS = 64
# A subscriber may ask for a smaller queue than the bus's default (a client that wants to
# see drops early, or a console that only needs recent lines), never a larger one.
MIN_QUEUE, MAX_QUEUE = 10, 1000

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
# A session gets the request and the connection; it replies itself and ends when it returns.
Session = Callable[[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class SocketLock:
    """One daemon per socket: an flock next to it; a stale socket from a dead daemon is removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd = -1

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path.parent, 0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError):
                holder = self.lock_path.read_text().strip()
            raise NixvmdError(
                f"another nixvmd{f' (pid {holder})' if holder else ''} already serves {self.path}; "
                "stop it first (nixvmctl stop, systemctl --user stop nixvmd) or use another daemon.socket"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        if self.path.exists() or self.path.is_symlink():
            log.info("removing stale socket %s left by a daemon that is gone", self.path)
            self.path.unlink()

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(self._fd)
            self._fd = -1


class ControlServer:
    """Serves requests on `path` with `handlers` (command name → coroutine) and `sessions`
    (command name → coroutine that takes the connection over)."""

    def __init__(
        self,
        path: Path,
        handlers: dict[str, Handler],
        events: EventBus,
        sessions: dict[str, Session] | None = None,
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.sessions = sessions or {}
        self.events = events
        self.lock = SocketLock(path)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.lock.acquire()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.lock.release()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None and peer_uid(sock) != os.getuid():
                await send_message(
                    writer,
                    {
                        "ok": False,
                        "error": "permission denied: the daemon serves only its own user",
                    },
                )
                return
            if len(self._clients) > MAX_CLIENTS:
                await send_message(writer, {"ok": False, "error": "too many connections; try again later"})
                return
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing; asyncio would log a cancelled handler as an error
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for request in read_lines(reader, writer, parse_request, "request"):
            if request["cmd"] == "subscribe":
                await self._stream(request, writer)
                return
            session = self.sessions.get(request["cmd"])
            if session is not None:
                await session(request, reader, writer)
                return
            await send_message(writer, await self._call(request))

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            known = ", ".join(sorted([*self.handlers, *self.sessions, "subscribe"]))
            return {"ok": False, "error": f"unknown command {request['cmd']!r} (known: {known})"}
        try:
            return {"ok": True, "result": await handler(request)}
        except (NixvmdError, KeyError, ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc).strip("'\"")}

    async def _stream(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        kinds = request.get("events") or list(EVENT_KINDS)
        if not isinstance(kinds, list) or not all(k in EVENT_KINDS for k in kinds):
            await send_message(
                writer,
                {
                    "ok": False,
                    "error": f"subscribe: events must be a list of {', '.join(EVENT_KINDS)}",
                },
            )
            return
        limit = request.get("limit", MAX_QUEUE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not MIN_QUEUE <= limit <= MAX_QUEUE:
            await send_message(
                writer, {"ok": False, "error": f"subscribe: limit must be {MIN_QUEUE}..{MAX_QUEUE}"}
            )
            return
        sub = self.events.subscribe(kinds, limit)
        try:
            await send_message(writer, {"ok": True, "result": {"subscribed": kinds}})
            while True:
                event = await sub.get()
                await send_message(writer, event)
        finally:
            self.events.unsubscribe(sub)


async def read_lines(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parse: Callable[[bytes], T],
    what: str,
) -> AsyncIterator[T]:
    """Each line from the client, parsed; until it closes or sends a line over MAX_LINE.

    A line `parse` refuses (ControlError) gets one error reply and is skipped; an oversized
    one gets an error reply and ends the conversation.
    """
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            await send_message(writer, {"ok": False, "error": f"{what} longer than {MAX_LINE} bytes"})
            return
        except asyncio.IncompleteReadError:
            return
        try:
            item = parse(line)
        except ControlError as exc:
            await send_message(writer, {"ok": False, "error": str(exc)})
            continue
        yield item


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line as a dict with a string "cmd"; ControlError saying what is wrong."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("malformed request: expected one JSON object per line") from None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ControlError('malformed request: expected {"cmd": "<command>", ...}')
    return request


async def send_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """Write one JSON line and wait until the peer took it (or the buffer has room)."""
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
