"""Listening to one guest: console lines, agent frames and QMP events become a Transcript and events.

`Listener` is what `Machine` calls back into while a run goes. It feeds the suite, the
splat scanner and the run's owner (hooks), writes what it learns into a `Transcript`
(the plain record `decide` judges) and sets the asyncio events the run waits on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixvmd.errors import StateSpaceError
from nixvmd.guest.protocol import FrameFilter, parse_frame
from nixvmd.results.record import TestResult, cut
from nixvmd.run.decide import Ending, Transcript
from nixvmd.run.guest_time import GuestTime
from nixvmd.run.space import guest_disk_full
from nixvmd.suite.base import Progress, SuiteRun
from nixvmd.suite.splats import BROKEN_KINDS, FATAL_KINDS, SplatKind, SplatScanner, halt_message
from nixvmd.vm.cmdline import Disk
from nixvmd.vm.gdbstub import GdbStub
from nixvmd.vm.machine import Machine

log = logging.getLogger(__name__)


@dataclass
class RunHooks:
    """How a run talks back to its owner while it goes (all optional)."""

    on_phase: Callable[[str], None] = lambda phase: None
    on_console: Callable[[str], None] = lambda line: None
    on_progress: Callable[[Progress], None] = lambda progress: None
    on_machine: Callable[[Machine | None], None] = lambda machine: None  # running / gone
    on_console_bytes: Callable[[bytes], None] = lambda chunk: None  # raw, for attached terminals
    on_space_error: Callable[[StateSpaceError], None] = lambda error: None  # state_dir had no room
    on_resume: Callable[[str], None] = lambda note: None  # the tests left go on in a fresh VM (why)
    on_verdict: Callable[[TestResult], None] = lambda result: None  # a test's, once the console shows it
    on_ssh: Callable[[dict[str, Any]], None] = lambda news: None  # current.ssh's news (port, guest sshd)
    on_gdb: Callable[[GdbStub], None] = lambda stub: None  # the run's gdbstub listens


LINE_SHOWN = 160  # of the console's last line in a timeout's reason

ProgressKey = tuple[str | None, int, int | None]


def progress_key(progress: Progress) -> ProgressKey:
    """What of a suite's progress is news: a new test or count (the ETA moves with the clock)."""
    return (progress.test, progress.done, progress.total)


@dataclass
class Listener:
    """What the guest has said so far: the transcript, and the events the run waits on."""

    suite: SuiteRun
    hooks: RunHooks
    state_dir: Path
    disks: Sequence[Disk] = ()
    transcript: Transcript = field(default_factory=Transcript)
    splats: SplatScanner = field(default_factory=SplatScanner)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    events: dict[Ending, asyncio.Event] = field(default_factory=lambda: {e: asyncio.Event() for e in Ending})
    machine: Machine | None = None
    space_error: StateSpaceError | None = None  # a guest write found the host disk full
    testing: bool = False  # the phase "testing" was announced
    verdicts_told: int = 0  # how many of the suite's verdicts the owner has heard
    guest: GuestTime = field(default_factory=GuestTime)  # the timeouts' clock: stops with the guest
    last_line: str = ""  # the console's last line with text (agent frames aside) ...
    last_line_at: float | None = None  # ... and when it came (time.monotonic())

    def __post_init__(self) -> None:
        self.frames = FrameFilter(self.suite.job().nonce)
        self.progress: ProgressKey = progress_key(self.suite.progress())

    def attach(self, machine: Machine) -> None:
        """Follow `machine`: its exit is an ending too."""
        self.machine = machine
        self.events[Ending.EXITED] = machine.exited

    def _end(self, ending: Ending) -> None:
        self.events[ending].set()

    def console(self, line: str) -> None:
        """One console line: the suite's, the owner's, and a panic, oops or halt of our own."""
        self.suite.console_line(line)
        self.hooks.on_console(line)
        self.tell_verdicts()
        t = self.transcript
        frame = self.frames.accept(parse_frame(line))
        if frame is not None:
            self._frame(frame.event, frame.argument)
        self.splats.set_test(self.publish_progress().test)
        splat = self.splats.feed(line)
        if frame is not None:
            return
        text = line.strip()
        if text:
            self.last_line, self.last_line_at = text, time.monotonic()
        kind = SplatKind(splat.kind) if splat is not None else None
        if kind in FATAL_KINDS and not t.panic_line:
            t.panic_line = text
            self._end(Ending.CRASHED)
        elif kind in BROKEN_KINDS and not t.oops_line:
            t.oops_line = text
        elif kind is None and not t.halt_line and (halt := halt_message(line)):
            t.halt_line = halt
            self._end(Ending.HALTED)

    def where_it_stopped(self, *, live: bool = True) -> str:
        """For a timeout's reason: the console's last line and, `live` (not a replay of a
        finished VM's console), how long ago it came: a guest that stalled says where, a
        slow one has a recent line."""
        if self.last_line_at is None:
            return "the console printed nothing"
        line = cut(self.last_line, LINE_SHOWN)
        if not live:
            return f'the console\'s last line: "{line}"'
        return f'the console\'s last line came {time.monotonic() - self.last_line_at:.0f}s before: "{line}"'

    def agent(self, line: str) -> None:
        """One line from the agent channel: `hello` gets the job, the rest is news."""
        frame = self.frames.accept(parse_frame(line))
        if frame is None:
            return
        if frame.event == "hello":
            if self.machine is not None:
                self.machine.write_agent(self.suite.job().to_wire())
            return
        self._frame(frame.event, frame.argument)
        self.publish_progress()  # a start or exit frame moves a command suite on

    def publish_progress(self) -> Progress:
        """The suite's progress, told to the owner when it moved, whichever channel moved it."""
        progress = self.suite.progress()
        key = progress_key(progress)
        if key != self.progress:
            self.progress = key
            # KUnit's tests run during boot, before the agent is ready: their first result is the start.
            self.announce_testing()
            self.hooks.on_progress(progress)
        return progress

    def tell_verdicts(self) -> None:
        """Tell the owner each verdict the suite has read since the last time, in order."""
        verdicts = self.suite.verdicts()
        for result in verdicts[self.verdicts_told :]:
            self.hooks.on_verdict(result)
        self.verdicts_told = len(verdicts)

    def announce_testing(self) -> None:
        """Tell the owner the phase is `testing`, once."""
        if not self.testing:
            self.testing = True
            self.hooks.on_phase("testing")

    def _frame(self, event: str, argument: str) -> None:
        self.suite.guest_event(event, argument)
        t = self.transcript
        if event == "ready":
            t.ready = True
            t.release = argument
            self.ready.set()
        elif event == "exit":
            with contextlib.suppress(ValueError):
                t.exit_status = int(argument)
            self._end(Ending.FINISHED)
        elif event == "module_error":
            # A module that will not load: the guest cannot run the suite as configured.
            t.module_errors.append(argument)
            self._end(Ending.CRASHED)
        elif event == "ssh":
            # The guest's sshd is up, or why it is not: news for `nixvmctl ssh`, not a verdict.
            up = argument == "up"
            self.hooks.on_ssh({"ready": up, "error": None if up else argument})
        elif event == "error":
            t.agent_errors.append(argument)
            log.warning("guest agent: %s", argument)
            self._end(Ending.CRASHED)

    def qmp_event(self, name: str, data: dict[str, Any]) -> None:
        """One QMP event: a pvpanic, the shutdown's reason, a disk write the host failed."""
        t = self.transcript
        self.guest.qmp_event(name)
        if name == "GUEST_PANICKED":
            t.panic_line = t.panic_line or "QEMU reported a guest panic (pvpanic)"
            self._end(Ending.CRASHED)
        elif name == "SHUTDOWN":
            t.shutdown_reason = str(data.get("reason", ""))
            if t.shutdown_reason.startswith("guest"):
                # The guest rebooted (a panic with panic=-1) or powered off: QEMU paused it.
                self._end(Ending.STOPPED)
        elif name == "BLOCK_IO_ERROR" and data.get("action") == "stop" and not t.machinery_error:
            # QEMU paused the guest because a disk image write failed on the host (werror):
            # with `nospace`, the host's file system is full. Not the kernel's doing.
            if data.get("nospace"):
                self.space_error = guest_disk_full(data, self.disks, self.state_dir)
                t.machinery_error = t.space_error = str(self.space_error)
            else:
                device = data.get("device") or data.get("node-name") or "a disk"
                cause = str(data.get("reason", ""))
                operation = data.get("operation", "write")
                t.machinery_error = f"QEMU paused the guest: a {operation} to {device} failed on the host" + (
                    f" ({cause})" if cause else ""
                )
            self._end(Ending.BROKEN)
