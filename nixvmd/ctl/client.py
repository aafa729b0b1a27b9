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


def default_socket() -> Path:
    """The socket of the config nixvmd would use from here, else the built-in default."""
    try:
        return load_config(find_config_file()).daemon.socket
    except ConfigError:
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/nixvmd-{os.getuid()}"
        return Path(runtime) / "nixvmd" / "control.sock"


class Client:
    """One connection to the daemon."""

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise ControlError(
                f"no nixvmd is listening on {path}; start it (nixvmd, or systemctl --user start "
                "nixvmd) or pass --socket"
            ) from None
        self.file = self.sock.makefile("rwb")
        self._stream_opened = False

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise ControlError("the daemon closed the connection")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ControlError("malformed reply from the daemon")
        return reply

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
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "request failed")))
        stream.result = reply.get("result")
        return stream

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one request; its result, or ControlError with the daemon's message."""
        self.file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "request failed")))
        return reply.get("result")

    def subscribe(
        self, events: list[str] | None = None, *, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Events as the daemon publishes them, until the connection ends.

        `limit` asks the daemon for a smaller queue than its default, so drops come sooner.
        """
        self.sock.settimeout(None)
        self.call("subscribe", events=events or [], **({} if limit is None else {"limit": limit}))
        while True:
            line = self.file.readline()
            if not line:
                return
            yield json.loads(line)


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
        self.sock.settimeout(None)
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def take(self) -> dict[str, Any] | None:
        """A message already received in full, else None (no waiting)."""
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ControlError("malformed message from the daemon")
        return message

    def fill(self, timeout: float | None = None) -> bool:
        """Receive once; False when nothing came within `timeout`.

        ControlError when the daemon closed the connection (`closed` is then True).
        """
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
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
