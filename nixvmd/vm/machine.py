"""One running QEMU: the process, its QMP session, its serial console and the agent channel.

`Machine` is an async context manager (`async with Machine(...) as m: await m.start()`):
whatever happens inside (errors, cancellation), QEMU is gone when the block is left.
Its state is explicit (`RunState`, after qemu.qmp's Runstate): each call says which
state it needs and a call in another state is a VMError saying so.
nixvmd listens on the QMP and agent sockets and QEMU connects to them, so there is no
race with QEMU creating sockets and no polling for them. The serial console is QEMU's
stdout, a file (console.log) that nixvmd follows: see nixvmd.vm.console for why.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from nixvmd.errors import VMError
from nixvmd.process import signal_group, start_group
from nixvmd.vm.cmdline import Sockets
from nixvmd.vm.console import ConsoleFile, LineSplitter, console_input

log = logging.getLogger(__name__)

SOCKET_DIR_PREFIX = "nixvmd-vm-"
_OWNER = ".owner"  # flock-ed by the process whose VM uses the directory
_owned: dict[Path, int] = {}


def _socket_base() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    if len(base) > 60 or not os.access(base, os.W_OK):
        base = "/tmp"
    return Path(base)


def socket_dir() -> Path:
    """A fresh private directory for one VM's sockets (short path: sun_path has 108 bytes).

    The directory holds a lock file for as long as this process uses it, so that a later
    nixvmd can tell the directory of a dead daemon (remove_stale_socket_dirs) from a live one.
    The lock file gets its name only once locked: there is no moment when it is unlocked.
    """
    path = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=_socket_base()))
    fd = os.open(path / (_OWNER + ".new"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(path / (_OWNER + ".new"), path / _OWNER)
    _owned[path] = fd
    return path


def release_socket_dir(path: Path) -> None:
    """Remove a directory made by socket_dir and let go of its lock (again: no-op)."""
    fd = _owned.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        os.close(fd)


def remove_stale_socket_dirs() -> list[Path]:
    """Remove the socket directories of VMs whose nixvmd is gone (killed, OOM, host crash).

    Only this user's directories with an unlocked owner file are removed; one without an
    owner file may be being created right now, and one that is locked is in use.
    """
    removed = []
    for path in sorted(_socket_base().glob(SOCKET_DIR_PREFIX + "*")):
        try:
            if path in _owned or path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
            fd = os.open(path / _OWNER, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info(
            "removed %d socket director%s of VMs of a nixvmd that is gone",
            len(removed),
            "y" if len(removed) == 1 else "ies",
        )
    return removed


class RunState(enum.Enum):
    """Where a Machine is in its life; it only ever moves forward.

    IDLE: made, nothing started. STARTING: QEMU launched, its QMP connection awaited.
    RUNNING: QMP connected, the guest goes. QUITTING: asked to end (quit or close).
    GONE: QEMU's process has ended (by itself, or because it was asked to).
    """

    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    QUITTING = "quitting"
    GONE = "gone"


class Machine:
    """A QEMU process started from `argv`, with console and agent streams and QMP.

    `on_console(line)` gets each line of the serial console (which QEMU writes to
    `console_log`), `on_agent(line)` each agent line, and `on_event(name, data)` each QMP
    event; all run on the event loop. Every console line is handed over before `exited`
    is set, so whoever waits for QEMU's end has seen all the guest printed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        sockets: Sockets,
        console_log: Path,
        on_console: Callable[[str], None],
        on_agent: Callable[[str], None],
        on_event: Callable[[str, dict[str, Any]], None] = lambda name, data: None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stderr_log: Path | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.sockets = sockets
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stderr_log = stderr_log
        self.connect_timeout = connect_timeout
        # Raw console output as it comes (an interactive prompt has no newline yet).
        self.on_console_bytes: Callable[[bytes], None] = lambda chunk: None
        self.console = ConsoleFile(console_log, on_console, self._console_chunk)
        self._console_input: asyncio.WriteTransport | None = None
        self._on_agent = on_agent
        self._on_event = on_event
        self.process: asyncio.subprocess.Process | None = None
        self.qmp = QMPClient("nixvmd")
        self._servers: list[asyncio.Server] = []
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.console_bytes = 0
        self.console_seen = asyncio.Event()
        self.exited = asyncio.Event()
        self.state = RunState.IDLE

    def _need(self, call: str, *states: RunState) -> None:
        if self.state not in states:
            needed = " or ".join(s.name for s in states)
            raise VMError(f"Machine.{call}() needs the machine {needed}; it is {self.state.name}")

    def _move(self, state: RunState) -> None:
        # GONE is final: a late quit or close does not bring a machine back.
        if self.state is not RunState.GONE:
            self.state = state

    async def __aenter__(self) -> Machine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def _console_chunk(self, chunk: bytes) -> None:
        self.console_bytes += len(chunk)
        self.console_seen.set()
        self.on_console_bytes(chunk)

    async def _listen_agent(self, path: Path) -> None:

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if "agent" in self._writers:
                writer.close()
                return
            self._writers["agent"] = writer
            lines = LineSplitter(self._on_agent)
            while chunk := await reader.read(65536):
                lines.feed(chunk)
            lines.end()

        self._servers.append(await asyncio.start_unix_server(accepted, path=str(path), limit=1 << 20))

    async def start(self) -> None:
        """Start QEMU and wait for its QMP connection; VMError when it does not come up.

        Needs IDLE; RUNNING after, GONE when QEMU ended during the start.
        """
        self._need("start", RunState.IDLE)
        self.state = RunState.STARTING
        for path in (self.sockets.agent, self.sockets.qmp):
            path.unlink(missing_ok=True)
        await self._listen_agent(self.sockets.agent)
        await self.qmp.start_server(str(self.sockets.qmp))
        stderr: Any = asyncio.subprocess.DEVNULL
        if self.stderr_log is not None:
            stderr = self.stderr_log.open("ab")
        console = self.console.writer()
        typed, keys = os.pipe()
        try:
            self.process = await start_group(
                *self.argv,
                stdin=typed,
                stdout=console,
                stderr=stderr,
                env=self.env,
                cwd=self.cwd,
                die_with_parent=True,  # no QEMU outlives nixvmd
            )
        except OSError as exc:
            os.close(keys)
            self.state = RunState.GONE
            raise VMError(f"cannot start {self.argv[0]}: {exc.strerror}; install qemu-system-x86") from None
        finally:
            os.close(console)
            os.close(typed)
            if self.stderr_log is not None:
                stderr.close()
        self._console_input = await console_input(keys)
        self.console.follow()
        self._tasks.append(asyncio.create_task(self._watch_exit(), name="qemu-exit"))
        accept = asyncio.create_task(self.qmp.accept())
        exited = asyncio.create_task(self.exited.wait())
        try:
            done, _ = await asyncio.wait(
                {accept, exited}, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            # Cancelled or not, neither task may outlive this call (an abandoned accept
            # would log "Task exception was never retrieved" once QEMU is killed).
            exited.cancel()
            if not accept.done():
                accept.cancel()
                with contextlib.suppress(BaseException):
                    await accept
        if accept not in done:
            raise VMError(self._failure_text("QEMU did not come up"))
        if accept.exception() is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), 2)
            raise VMError(self._failure_text("QEMU dropped its QMP connection"))
        self._tasks.append(asyncio.create_task(self._events(), name="qmp-events"))
        if self.state is RunState.STARTING:
            self.state = RunState.RUNNING

    def _failure_text(self, what: str) -> str:
        tail = ""
        if self.stderr_log is not None and self.stderr_log.exists():
            lines = self.stderr_log.read_text(errors="replace").strip().splitlines()
            tail = " | ".join(lines[-5:])
        code = self.returncode
        status = f" (exit status {code})" if code is not None else ""
        return f"{what}{status}" + (f": {tail}" if tail else "; see qemu.log in the run directory")

    async def _watch_exit(self) -> None:
        assert self.process is not None
        await self.process.wait()
        self.console.drain()
        self.state = RunState.GONE
        self.exited.set()

    async def _events(self) -> None:
        with contextlib.suppress(Exception):
            async for event in self.qmp.events:
                data = event.get("data")
                self._on_event(str(event["event"]), dict(data) if isinstance(data, dict) else {})

    def _writable(self, call: str) -> bool:
        """Whether a write may go: the machine is started. Before start, a bug (VMError).

        The guest runs from the moment QEMU does, before its QMP connection is up
        (STARTING), and may end at any moment while someone types or a reply is on its
        way: bytes for a machine QUITTING or GONE, or before QEMU's stdin is there, are
        dropped rather than raised about.
        """
        if self.state in (RunState.QUITTING, RunState.GONE):
            return False
        self._need(call, RunState.STARTING, RunState.RUNNING)
        return True

    def write_agent(self, data: bytes) -> None:
        """Send bytes to the guest agent's channel (replies to `hello`); needs STARTING or RUNNING."""
        if not self._writable("write_agent"):
            return
        writer = self._writers.get("agent")
        if writer is not None and not writer.is_closing():
            writer.write(data)

    def write_console(self, data: bytes) -> None:
        """Type into the guest's serial console; needs STARTING or RUNNING."""
        if not self._writable("write_console"):
            return
        if self._console_input is not None and not self._console_input.is_closing():
            self._console_input.write(data)

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        """A QMP command (e.g. dump-guest-memory before QEMU goes); needs RUNNING."""
        self._need("execute", RunState.RUNNING)
        return await self.qmp.execute(command, arguments)

    async def quit(self, timeout: float = 5.0) -> None:
        """End QEMU: QMP quit, then SIGKILL if it does not go within `timeout`.

        Needs a started machine (STARTING, RUNNING, QUITTING or GONE: then there is nothing to do).
        """
        self._need("quit", RunState.STARTING, RunState.RUNNING, RunState.QUITTING, RunState.GONE)
        self._move(RunState.QUITTING)
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.qmp.execute("quit"), timeout)
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.exited.wait()

    def kill(self) -> None:
        """SIGKILL QEMU's whole process group (the nix runner's shell included)."""
        if self.process is not None and self.process.returncode is None:
            signal_group(self.process, signal.SIGKILL)

    async def close(self) -> None:
        """Make sure QEMU is gone and every socket and task is closed (any state; GONE after)."""
        self._move(RunState.QUITTING)
        if self.process is not None and self.process.returncode is None:
            self.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.wait(), 10)
        elif self.process is not None:
            # QEMU may have left children (the nix runner's shell keeps none, but be sure).
            signal_group(self.process, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.qmp.disconnect(), 2)
        for writer in self._writers.values():
            writer.close()
        if self._console_input is not None:
            self._console_input.close()
        self.console.close()
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        for path in (self.sockets.agent, self.sockets.qmp):
            path.unlink(missing_ok=True)
        self.state = RunState.GONE
