"""The control socket: line-delimited JSON requests and replies, and event subscriptions.

Each request is one JSON object on one line, {"cmd": "status", ...}; each reply is one line,
{"ok": true, "result": ...} or {"ok": false, "error": "..."}. A subscription turns the
connection into a stream of event lines; a session command (such as `console`) takes the
connection over entirely. Only the daemon's own user may connect.

Request/reply connections and streams (subscriptions, console sessions) have separate caps,
so neither kind can lock the other out. A request/reply connection that sends no complete
request line for IDLE_TIMEOUT_S is told so and closed; when all request/reply places are
taken, the one idle longest is closed (with an error line) to make room, so a one-shot
request is served however many silent connections are held open. Running out of file
descriptors does the same instead of stopping the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nixvmd.daemon.socket_place import SocketLock
from nixvmd.daemon.subscription import event_stream, subscription_of
from nixvmd.daemon.wire import MAX_LINE, next_line, parse_request, send_message
from nixvmd.errors import ControlError, NixvmdError
from nixvmd.report.events import EventBus

log = logging.getLogger(__name__)

MAX_REQUEST_CONNECTIONS = 64
MAX_STREAMS = 64
IDLE_TIMEOUT_S = 30.0
# Tests shorten the idle timeout with this (seconds); nothing else should need to.
IDLE_TIMEOUT_ENV = "NIXVMD_IDLE_TIMEOUT"
# How long a closing connection may take to flush its last line before it is cut off.
CLOSE_GRACE_S = 5.0
# Out of file descriptors with no idle connection to close: try accepting again after this
# (or sooner, when a connection ends).
ACCEPT_RETRY_S = 1.0
BACKLOG = 256
FD_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
# A session gets the request and the connection; it replies itself and ends when it returns.
Session = Callable[[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def idle_timeout_from_env() -> float:
    """IDLE_TIMEOUT_S, or the positive number of seconds in $NIXVMD_IDLE_TIMEOUT."""
    text = os.environ.get(IDLE_TIMEOUT_ENV, "")
    if not text:
        return IDLE_TIMEOUT_S
    with contextlib.suppress(ValueError):
        if (value := float(text)) > 0:
            return value
    log.warning("ignoring %s=%r: not a positive number of seconds", IDLE_TIMEOUT_ENV, text)
    return IDLE_TIMEOUT_S


def listen(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600 from the start; NixvmdError when impossible."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise NixvmdError(
            f"cannot create the control socket {path}: {exc.strerror}; "
            "set daemon.socket to a path in a directory you own"
        ) from None
    finally:
        os.umask(old_umask)
    sock.setblocking(False)
    return sock


class Connection:
    """One client's connection; `idle_since` is None while one of its requests is served."""

    def __init__(self, writer: asyncio.StreamWriter, now: float) -> None:
        self.writer = writer
        self.idle_since: float | None = now
        self.task: asyncio.Task[None] | None = None

    def close_with(self, message: dict[str, Any]) -> None:
        """Say `message` if it can go out at once, and close; the descriptor is freed promptly."""
        transport = self.writer.transport
        if transport.get_write_buffer_size() == 0:
            self.writer.write(json.dumps(message).encode() + b"\n")
        if transport.get_write_buffer_size() == 0:
            transport.close()
        else:
            transport.abort()  # a client that does not read gets no last word
        if self.task is not None:
            self.task.cancel()


class ControlServer:
    """Serves requests on `path` with `handlers` (command name → coroutine) and `sessions`
    (command name → coroutine that takes the connection over)."""

    def __init__(
        self,
        path: Path,
        handlers: dict[str, Handler],
        events: EventBus,
        sessions: dict[str, Session] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.sessions = sessions or {}
        self.events = events
        self.idle_timeout = idle_timeout if idle_timeout is not None else idle_timeout_from_env()
        self.lock = SocketLock(path)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        # In the order they last became idle, so the first idle one has waited longest.
        self._requests: dict[Connection, None] = {}
        self._streams: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_ended = asyncio.Event()
        self._told_short_of_fds = False

    async def start(self) -> None:
        """Take the socket's place (NixvmdError when it is not safe or taken) and start serving."""
        self.lock.acquire()
        try:
            self._listener = listen(self.path)
        except NixvmdError:
            self.lock.release()
            raise
        self._accepting = asyncio.create_task(self._accept_loop())
        self._accepting.add_done_callback(_report_crash)

    async def close(self) -> None:
        """Stop accepting, end every connection, remove the socket and the lock."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for conn in [*self._requests, *self._streams]:
            conn.writer.transport.abort()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.lock.release()

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError as exc:
                if exc.errno in FD_SHORTAGE:
                    await self._make_room_for_a_descriptor(exc)
                else:
                    log.warning("accepting a control connection failed: %s", exc)
                continue
            await self._admit(sock)

    async def _admit(self, sock: socket.socket) -> None:
        """Serve a new connection as a request/reply one, making room for it if need be."""
        try:
            uid = peer_uid(sock)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        except OSError:
            sock.close()  # gone before it could be served
            return
        if uid != os.getuid():
            self._spawn(_refuse(writer, "permission denied: the daemon serves only its own user"))
            return
        now = asyncio.get_running_loop().time()
        if len(self._requests) >= MAX_REQUEST_CONNECTIONS:
            victim = self._longest_idle()
            if victim is None:
                busy = f"too many requests in progress ({MAX_REQUEST_CONNECTIONS}); try again"
                self._spawn(_refuse(writer, busy))
                return
            self._make_room(victim, now)
        conn = Connection(writer, now)
        self._requests[conn] = None
        conn.task = self._spawn(self._converse(conn, reader))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _longest_idle(self) -> Connection | None:
        return next((c for c in self._requests if c.idle_since is not None), None)

    def _now_idle(self, conn: Connection, now: float) -> None:
        conn.idle_since = now
        if self._requests.pop(conn, False) is None:
            self._requests[conn] = None  # to the end: the most recently idle

    def _make_room(self, victim: Connection, now: float) -> None:
        idle_for = now - (victim.idle_since or now)
        self._forget(victim)
        victim.close_with(
            {
                "ok": False,
                "error": f"closed after {idle_for:.1f}s without a request to make room for another "
                f"client ({MAX_REQUEST_CONNECTIONS} connections at most); reconnect to send one",
            }
        )

    async def _make_room_for_a_descriptor(self, exc: OSError) -> None:
        """Out of file descriptors: close the longest-idle connection, else wait for one to end."""
        if not self._told_short_of_fds:
            self._told_short_of_fds = True
            log.warning(
                "out of file descriptors (%s): the control socket closes its longest-idle "
                "connections to take new ones; raise the limit (ulimit -n, LimitNOFILE=) if this recurs",
                exc.strerror,
            )
        victim = self._longest_idle()
        if victim is not None:
            self._make_room(victim, asyncio.get_running_loop().time())
            await asyncio.sleep(0)  # the transport closes on the next turn of the loop
            return
        self._one_ended.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACCEPT_RETRY_S):
                await self._one_ended.wait()

    def _forget(self, conn: Connection) -> None:
        self._requests.pop(conn, None)
        self._streams.discard(conn)
        self._one_ended.set()

    async def _converse(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """Requests and replies until the client leaves, idles too long or opens a stream."""
        writer = conn.writer
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._now_idle(conn, loop.time())
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        line = await next_line(reader, writer, "request")
                except TimeoutError:
                    conn.idle_since = None
                    await send_message(
                        writer,
                        {
                            "ok": False,
                            "error": f"closed after {self.idle_timeout:g}s without a request; "
                            "send one JSON request per line soon after connecting",
                        },
                    )
                    return
                conn.idle_since = None
                if line is None:
                    return
                try:
                    request = parse_request(line)
                    stream = self._stream_for(request)
                except ControlError as exc:
                    await send_message(writer, {"ok": False, "error": str(exc)})
                    continue
                if stream is not None:
                    self._requests.pop(conn, None)
                    self._streams.add(conn)
                    await _serve_stream(stream, request, reader, writer)
                    return
                await send_message(writer, await self._call(request))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._forget(conn)
            await _hang_up(writer)

    def _stream_for(self, request: dict[str, Any]) -> Session | None:
        """What takes the connection over for `request` (None: a plain request); ControlError
        when the request is invalid or no stream may be opened now."""
        session = self.sessions.get(request["cmd"])
        if session is None and request["cmd"] != "subscribe":
            return None
        if session is None:
            kinds, limit = subscription_of(request)
            session = functools.partial(event_stream, self.events, kinds, limit)
        if len(self._streams) >= MAX_STREAMS:
            raise ControlError(
                f"too many subscriptions and console sessions ({MAX_STREAMS} open); "
                "end some (nixvmctl logs -f, watch, console) and try again"
            )
        return session

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to a plain request: a user's mistake is one sentence, a bug is logged."""
        cmd = request["cmd"]
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted([*self.handlers, *self.sessions, "subscribe"]))
            return {"ok": False, "error": f"unknown command {cmd!r} (known: {known})"}
        try:
            return {"ok": True, "result": await handler(request)}
        except NixvmdError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            # Anything else is nixvmd's own fault: its traceback goes to the log, not to the user.
            log.exception("the control command %r failed", cmd)
            return {"ok": False, "error": internal_error(cmd)}


def internal_error(cmd: str) -> str:
    """The reply to a request a bug in nixvmd broke: the details are in the daemon's log."""
    return f"internal error in nixvmd while serving {cmd!r} (see the daemon's log)"


async def _serve_stream(
    stream: Session, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Hand the connection to `stream`; a bug in it is logged with its traceback, the server goes on."""
    try:
        await stream(request, reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError):
        raise
    except Exception:
        log.exception("the control stream %r failed", request["cmd"])
        with contextlib.suppress(ConnectionError):
            await send_message(writer, {"ok": False, "error": internal_error(request["cmd"])})


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the control socket stopped accepting connections", exc_info=exc)


async def _refuse(writer: asyncio.StreamWriter, error: str) -> None:
    try:
        await send_message(writer, {"ok": False, "error": error})
    except ConnectionError:
        pass
    finally:
        await _hang_up(writer)


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    """Close after the last line went out; cut the connection when the client does not take it."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except Exception:  # the client went first; nothing left to do
        pass
