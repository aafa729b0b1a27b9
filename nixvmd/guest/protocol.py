"""The agent protocol: the job the host hands the guest, and the frames the guest sends back.

A frame is one line, "@@NIXVMD@@ <nonce> <seq> <event> <argument> @@". It may arrive on the
virtio-serial port or, for kernels without virtio-console, on the serial console, where
kernel messages can precede it on the same line; so frames are found by search, carry the
run's nonce (output of an earlier run cannot pass for this one) and a sequence number
(the same frame seen on two channels counts once).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import itertools
import re
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = "@@NIXVMD@@"
AGENT_PORT = "org.nixvmd.agent"
_FRAME = re.compile(r"@@NIXVMD@@ (?P<nonce>[0-9a-f]+) (?P<seq>\d+) (?P<event>[a-z_]+) ?(?P<arg>.*?) @@\s*$")

EVENTS = ("hello", "ready", "start", "exit", "error", "module_error", "progress", "ssh")


@dataclass(frozen=True)
class Frame:
    """One message from the agent."""

    nonce: str
    seq: int
    event: str
    argument: str


def parse_frame(line: str) -> Frame | None:
    """The frame in `line`, or None when the line carries none (or a mangled one)."""
    if MAGIC not in line:
        return None
    match = _FRAME.search(line)
    if match is None or match["event"] not in EVENTS:
        return None
    return Frame(match["nonce"], int(match["seq"]), match["event"], match["arg"])


@dataclass
class FrameFilter:
    """Keeps the frames of one run (by nonce), each sequence number once."""

    nonce: str
    _seen: set[int] = field(default_factory=set)

    def accept(self, frame: Frame | None) -> Frame | None:
        if frame is None:
            return None
        if frame.event == "hello":
            return frame
        if frame.nonce != self.nonce or frame.seq in self._seen:
            return None
        self._seen.add(frame.seq)
        return frame


_pinned: contextvars.ContextVar[tuple[str, Iterator[int]] | None] = contextvars.ContextVar(
    "nixvmd_pinned_tokens", default=None
)


def new_token(nbytes: int) -> str:
    """A fresh hex token of `nbytes` (a job's nonce, a results disk's mark): random, or pinned.

    Inside `pinned_tokens(seed)` the tokens are a function of the seed and how many were
    asked for before, so a job made twice from the same inputs is the same job: what a Nix
    derivation needs to be found again by its content (nixvmd.distribute).
    """
    pinned = _pinned.get()
    if pinned is None:
        return secrets.token_hex(nbytes)
    seed, counter = pinned
    return hashlib.sha256(f"{seed}:{next(counter)}".encode()).hexdigest()[: 2 * nbytes]


@contextlib.contextmanager
def pinned_tokens(seed: str) -> Iterator[None]:
    """Within the block, `new_token` gives the same tokens, in the same order, for the same seed."""
    reset = _pinned.set((seed, itertools.count()))
    try:
        yield
    finally:
        _pinned.reset(reset)


@dataclass(frozen=True)
class GuestJob:
    """What the agent runs: a shell command (empty for console-only suites like KUnit)."""

    kind: str
    command: str
    nonce: str = field(default_factory=lambda: new_token(6))
    env: tuple[tuple[str, str], ...] = ()
    printk: str = ""

    def to_env_file(self) -> str:
        """The job as a shell fragment the agent sources (/nixvmd/job.env)."""
        pairs = [
            ("NIXVMD_NONCE", self.nonce),
            ("NIXVMD_KIND", self.kind),
            ("NIXVMD_COMMAND", self.command),
            ("NIXVMD_PRINTK", self.printk),
            *self.env,
        ]
        lines = [f"{name}={shlex.quote(value)}" for name, value in pairs]
        lines += [f"export {name}" for name, _ in self.env]
        return "\n".join(lines) + "\n"

    def to_wire(self) -> bytes:
        """The job as one line for the agent channel (reply to `hello`)."""
        return base64.b64encode(self.to_env_file().encode()) + b"\n"
