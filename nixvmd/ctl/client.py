"""A blocking client of the daemon's control socket (nixvmctl needs nothing fancier)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nixvmd.config.load import find_config_file, load_config
from nixvmd.errors import ConfigError, ControlError


def default_socket(config: Path | None = None) -> Path:
    """The socket of `config` (default: the config nixvmd would use from here), else the built-in one."""
    try:
        return load_config(config or find_config_file()).daemon.socket
    except ConfigError:
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/nixvmd-{os.getuid()}"
        return Path(runtime) / "nixvmd" / "control.sock"


class NoDaemonError(ControlError):
    """Nothing listens on the socket (no socket there, or the connection is refused)."""


# The daemon's accept queue was full: how soon to knock again (until the timeout).
CONNECT_RETRY_S = 0.01


class Client:
    """One connection to the daemon.

    Every way the daemon can fail to answer (no daemon, refused, hung up, reset, silent,
    garbled) is a ControlError whose message says which, so the socket's own broken pipe is
    never taken for stdout's.
    """

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self._connect()
        except BaseException:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")
        self._stream_opened = False

    def _connect(self) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                self.sock.connect(str(self.path))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                raise NoDaemonError(
                    f"no nixvmd is listening on {self.path}; start it (nixvmd, or systemctl --user start "
                    "nixvmd) or pass --socket"
                ) from None
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ControlError(
                        f"the daemon on {self.path} took no new connection within {self.timeout:g}s; "
                        "try again later"
                    ) from None
                time.sleep(CONNECT_RETRY_S)
            except OSError as exc:
                raise ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            # Hung up on before the request went out; the daemon may have said why first.
            try:
                reason = str(self._read().get("error") or "")
            except ControlError:
                reason = ""
            raise ControlError(
                f"the daemon refused the connection: {reason}"
                if reason
                else "the daemon closed the connection before taking the request"
            ) from None
        except TimeoutError:
            raise ControlError(f"the daemon took no request within {self.timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"sending to the daemon failed: {exc.strerror or exc}") from None

    def _read_line(self) -> bytes:
        try:
            line = self.file.readline()
        except TimeoutError:
            raise ControlError(f"the daemon did not answer within {self.timeout:g}s") from None
        except ConnectionResetError:
            raise ControlError("the daemon reset the connection without answering") from None
        except OSError as exc:
            raise ControlError(f"reading from the daemon failed: {exc.strerror or exc}") from None
        if not line:
            raise ControlError("the daemon closed the connection without answering")
        if not line.endswith(b"\n"):
            raise ControlError("the daemon closed the connection in the middle of its answer")
        return bytes(line)

    def _read(self) -> dict[str, Any]:
        return _message(self._read_line(), "reply")

    def open_stream(self, cmd: str, **args: Any) -> Stream:
        """Send a request that turns the connection into a stream (subscribe, console).

        The stream reads the socket itself, without the buffered file `call` uses, so that a
        caller can wait on its `fileno()` with select and read with timeouts. ControlError
        with the daemon's message when it refuses. The client is spent after this.
        """
        if self._stream_opened:
            raise ControlError("this connection is already a stream")
        self._stream_opened = True
        stream = Stream(self.sock)
        stream.send({"cmd": cmd, **args})
        reply = stream.read(timeout=self.sock.gettimeout())
        if reply is None:
            raise ControlError("the daemon did not answer in time")
        _check_reply(reply)
        if not reply["ok"]:
            raise ControlError(str(reply.get("error") or "request failed"))
        stream.result = reply.get("result")
        return stream

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one request; its result, or ControlError with the daemon's message."""
        self._send({"cmd": cmd, **args})
        reply = self._read()
        _check_reply(reply)
        if not reply["ok"]:
            raise ControlError(str(reply.get("error") or "request failed"))
        return reply.get("result")

    def subscribe(
        self, events: list[str] | None = None, *, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Events as the daemon publishes them, until the daemon ends the stream.

        `limit` asks the daemon for a smaller queue than its default, so drops come sooner.
        """
        self.sock.settimeout(None)
        self.call("subscribe", events=events or [], **({} if limit is None else {"limit": limit}))
        while True:
            try:
                line = self._read_line()
            except ControlError:
                return
            yield _message(line, "event")


def _message(line: bytes, what: str) -> dict[str, Any]:
    """One JSON object from the daemon; ControlError when it is not one."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(f"malformed {what} from the daemon (not JSON)") from None
    if not isinstance(message, dict):
        raise ControlError(f"malformed {what} from the daemon (not a JSON object)")
    return message


def _check_reply(reply: dict[str, Any]) -> None:
    if not isinstance(reply.get("ok"), bool):
        raise ControlError('malformed reply from the daemon (no "ok")')


class Stream:
    """A connection in streaming mode: JSON lines each way, read with timeouts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.result: Any = None
        self._buffer = b""
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        """True when a whole line is already buffered (select would not see it)."""
        return b"\n" in self._buffer

    def send(self, message: dict[str, Any]) -> None:
        """Send one message; ControlError when the daemon is gone."""
        self.sock.settimeout(None)
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            self.closed = True
            raise ControlError(f"the daemon closed the connection ({exc.strerror or exc})") from None

    def take(self) -> dict[str, Any] | None:
        """A message already received in full, else None (no waiting)."""
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return _message(line, "message")

    def fill(self, timeout: float | None = None) -> bool:
        """Receive once; False when nothing came within `timeout`.

        ControlError when the daemon closed the connection (`closed` is then True).
        """
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError as exc:
            self.closed = True
            raise ControlError(f"the daemon closed the connection ({exc.strerror or exc})") from None
        if not chunk:
            self.closed = True
            raise ControlError("the daemon closed the connection")
        self._buffer += chunk
        return True

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message; None when none came within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (message := self.take()) is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.fill(remaining)
        return message
