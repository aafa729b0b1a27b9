"""`nixvmctl console`: a person's terminal attached to the running guest's serial console."""

from __future__ import annotations

import contextlib
import os
import select
import termios
import tty
from collections.abc import Iterator
from typing import Any

from nixvmd.ctl.client import Client, Stream

DETACH = b"\x1d"  # Ctrl-], as in telnet and virsh console


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on `fd` in raw mode (keys go through as typed), restored however we leave."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def shown(message: dict[str, Any]) -> tuple[bytes, bool]:
    """What the terminal shows for a message from the daemon, and whether the session is over."""
    kind = message.get("event")
    if kind == "console-bytes":
        return str(message["text"]).encode("utf-8", "surrogateescape"), False
    if kind == "console":
        return str(message["line"]).encode("utf-8", "replace") + b"\r\n", False
    if kind == "dropped":
        return f"[nixvmctl: {message['count']} console lines dropped]\r\n".encode(), False
    if kind == "run":
        return f"[run {message['run_id']} ended: {message.get('outcome')}]\r\n".encode(), True
    if message.get("ok") is False:
        return f"[nixvmd: {message.get('error')}]\r\n".encode(), False
    return b"", False


def attach(client: Client, stdin: int = 0, stdout: int = 1, *, shard: int | None = None) -> int:
    """Attach until Ctrl-], the end of the run, or end of input; ControlError if no guest runs.

    `shard`: in a run with shards, that shard's guest (the daemon takes shard 0 without one).
    """
    stream = client.open_stream("console", **({} if shard is None else {"shard": shard}))
    result = stream.result or {}
    which = f" shard {result['shard']}" if result.get("shard") is not None else ""
    banner = (
        f"attached to run {result.get('attached')}{which} ({result.get('kernel_version')}); Ctrl-] detaches"
    )
    os.write(stdout, banner.encode() + b"\r\n")
    with raw_terminal(stdin):
        ended = _session(stream, stdin, stdout)
    os.write(stdout, b"\r\n" if ended else b"\r\ndetached\r\n")
    return 0


def _session(stream: Stream, stdin: int, stdout: int) -> bool:
    """Shuttle bytes both ways; True when the run ended, False when the user detached."""
    while True:
        while (message := stream.take()) is not None:
            text, over = shown(message)
            os.write(stdout, text)
            if over:
                return True
        readable, _, _ = select.select([stream.fileno(), stdin], [], [])
        if stream.fileno() in readable:
            stream.fill(None)
        if stdin in readable:
            keys = os.read(stdin, 4096)
            if not keys:
                return False
            keys, detach, _ = keys.partition(DETACH)
            if keys:
                stream.send({"input": keys.decode("utf-8", "surrogateescape")})
            if detach:
                return False
