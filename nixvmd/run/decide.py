"""A run's outcome from what the guest and QEMU said: a pure function over a plain record.

The split that matters is whose fault an ending is: the kernel's (`failed`, `crashed`,
`timeout`) or the machinery's (`error`: QEMU, the host, nixvmd, a module the guest could
not load). `decide` is the one place that says which, so it is tested without a VM.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from nixvmd.results.record import Outcome


class Ending(enum.StrEnum):
    """What ended the run's wait for the guest (none: a timeout did)."""

    FINISHED = "finished"  # the agent reported the suite's exit status
    CRASHED = "crashed"  # a panic, an agent error or a module that would not load
    HALTED = "halted"  # the kernel said it halts or powers off
    BROKEN = "broken"  # QEMU paused the guest: the host failed a disk write
    EXITED = "exited"  # QEMU's process ended
    STOPPED = "stopped"  # the guest rebooted or powered off by itself: QEMU paused it (QMP SHUTDOWN)


@dataclass
class Transcript:
    """What the guest and QEMU said during one run, as plain data (filled while it goes)."""

    ending: Ending | None = None
    ready: bool = False  # the agent reported ready
    exit_status: int | None = None  # the suite's, from the agent's `exit` frame
    release: str = ""  # the guest's `uname -r`, from `ready`
    panic_line: str = ""
    oops_line: str = ""
    halt_line: str = ""
    shutdown_reason: str = ""  # QMP SHUTDOWN's reason ("guest-shutdown", "host-qmp-quit", ...)
    machinery_error: str = ""  # the host broke under the guest (BLOCK_IO_ERROR)
    space_error: str = ""  # ... because the host's file system is full
    module_errors: list[str] = field(default_factory=list)
    agent_errors: list[str] = field(default_factory=list)
    qemu_returncode: int | None = None
    timeout: str = ""  # why the wait timed out (boot, suite, a hung test), "" when it did not


def decide(t: Transcript) -> tuple[Outcome, str]:
    """The outcome of a run and its reason ("" for a plain pass).

    Precedence, first match wins: host out of space (error); a timeout; a kernel panic
    (even when the suite then finished: the kernel died); a module that did not load
    (error: the suite could not run as configured); the suite's exit status; the host
    failing a disk write (error); an agent error (crashed); a halt; an oops before the
    guest went away; the guest shutting down by itself; else QEMU died on its own (error).
    """
    if t.space_error:
        return Outcome.ERROR, t.space_error
    if t.timeout:
        return Outcome.TIMEOUT, t.timeout
    if t.panic_line:
        return Outcome.CRASHED, f"kernel panic: {t.panic_line}"
    if t.module_errors:
        return Outcome.ERROR, "a kernel module did not load: " + "; ".join(t.module_errors)
    if t.ending is Ending.FINISHED:
        if t.exit_status == 0:
            return Outcome.PASSED, ""
        return Outcome.FAILED, f"the suite exited with status {t.exit_status}"
    if t.machinery_error:
        return Outcome.ERROR, t.machinery_error
    if t.ending is Ending.CRASHED:
        return Outcome.CRASHED, "; ".join(t.agent_errors) or "the guest agent failed"
    if t.halt_line:
        return Outcome.CRASHED, f"the guest halted by itself ({t.halt_line}) before the suite ended"
    if t.oops_line:
        return Outcome.CRASHED, f"kernel oops: {t.oops_line}"
    if (t.qemu_returncode == 0 or t.ending is Ending.STOPPED) and t.shutdown_reason.startswith("guest"):
        return (
            Outcome.CRASHED,
            f"the guest went down by itself ({t.shutdown_reason}) before the suite ended",
        )
    return (
        Outcome.ERROR,
        f"QEMU exited unexpectedly (exit status {t.qemu_returncode}); see qemu.log and console.log",
    )
