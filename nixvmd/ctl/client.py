"""A blocking client of the daemon's control socket (nixvmctl needs nothing fancier)."""

from __future__ import annotations

import json
import os
import socket
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

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one request; its result, or ControlError with the daemon's message."""
        self.file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "request failed")))
        return reply.get("result")

    def subscribe(self, events: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Events as the daemon publishes them, until the connection ends."""
        self.sock.settimeout(None)
        self.call("subscribe", events=events or [])
        while True:
            line = self.file.readline()
            if not line:
                return
            yield json.loads(line)
