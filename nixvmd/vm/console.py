"""The guest's serial console: written to console.log by QEMU, followed by nixvmd as it grows.

Why a file, not a socket: QEMU's 8250 emulation writes one byte at a time to its chardev
and has no flow control towards it. On a socket, a reader that falls behind by a few
hundred bytes (a Unix socket holds 278 one-byte writes) makes QEMU's write fail with
EAGAIN; the UART retries a few times, then drops the byte, and the guest's driver, which
gives up waiting for the transmitter after 10 ms, overwrites the one still pending; and
QEMU's `logfile=` records a byte once per failed attempt and again when it goes through.
Under host load that turned `kunit-resource-test` into `kunit-resurce-test` (parsed) and
`kunit-ressurce-test` (console.log). A write to a regular file never fails that way, so
the console is QEMU's stdout (chardev `stdio`) opened on console.log: every byte the guest
sent is there exactly once, whenever nixvmd gets to read it. Its stdin is a pipe from
nixvmd, for typing into the console. See docs/console.md for the experiment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from nixvmd.watch.inotify_fd import FileWrites

CHUNK = 1 << 16
MAX_PENDING = 1 << 16
"""An unterminated line longer than this is handed over as it is (memory stays bounded)."""


class LineSplitter:
    """Bytes in, text lines out (a CR before the LF dropped, undecodable bytes replaced)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            self._on_line(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._pending) > MAX_PENDING:
            self._on_line(self._pending.decode("utf-8", "replace"))
            self._pending = b""

    def end(self) -> None:
        """The stream ended: hand over an unterminated last line."""
        if self._pending:
            self._on_line(self._pending.rstrip(b"\r").decode("utf-8", "replace"))
            self._pending = b""


class ConsoleFile:
    """console.log as QEMU's stdout, read back as it grows (inotify, no polling).

    `writer()` opens the file for QEMU (append, so an existing log is continued, never
    overwritten); `follow()` starts reading from where the log was at that moment and
    calls `on_chunk(bytes)` then `on_line(str)` for each new piece; `drain()` reads to
    the end at once (QEMU has exited: nothing more will come).
    """

    def __init__(self, path: Path, on_line: Callable[[str], None], on_chunk: Callable[[bytes], None]) -> None:
        self.path = path
        self._lines = LineSplitter(on_line)
        self._on_chunk = on_chunk
        self._reader = -1
        self._watch: FileWrites | None = None

    def writer(self) -> int:
        """A descriptor QEMU writes the console to (the caller closes it after the fork)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        if self._reader < 0:
            self._reader = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            os.lseek(self._reader, 0, os.SEEK_END)
        return fd

    def follow(self) -> None:
        """Read what is there, then whatever QEMU writes next, as it comes."""
        if self._reader < 0 or self._watch is not None:
            return
        self._watch = FileWrites(self.path, self.drain)
        self._watch.__enter__()
        self.drain()

    def drain(self) -> None:
        """Hand over everything written so far."""
        while self._reader >= 0:
            chunk = os.read(self._reader, CHUNK)
            if not chunk:
                return
            self._on_chunk(chunk)
            self._lines.feed(chunk)

    def close(self) -> None:
        """Read the rest, end the last line, stop following."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._reader >= 0:
            with contextlib.suppress(OSError):
                self.drain()
            self._lines.end()
            os.close(self._reader)
            self._reader = -1


async def console_input(fd: int) -> asyncio.WriteTransport:
    """A buffered, non-blocking writer on the pipe that is QEMU's stdin (the console's input)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(fd, "wb", buffering=0))
    return transport
