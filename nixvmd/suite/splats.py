"""Kernel splats on the console: a streaming scanner turning oopses, warnings and such into Splats.

A splat is one kernel report (a WARNING with its register dump and call trace, a
KASAN report, a lockdep report, ...). The scanner is fed console lines one at a
time and reports each splat once, on its first line, attributed to the test the
caller says is running. Lines that belong to a report already open (the
``Oops:`` line after ``BUG: kernel NULL pointer dereference``, the second
``XFS ...: Corruption detected`` of the same burst) do not start a new one.

A report ends at its end marker (``---[ end trace ...]---``, the closing ``====``
line of KASAN and UBSAN), after a pause of more than a second in the printk
timestamps, when the running test changes, or after 400 lines. Reports without
an end marker (lockdep, hung task, RCU stall) also end at ``</TASK>``, after
which only a report of the same kind (the next task of a hung-task burst) is
folded in. ``Kernel panic - not syncing`` is always a splat of its own: it is
the fact that the machine died, even when an oops caused it.

Kinds: bug, oops, warning, kasan (KASAN and KFENCE), ubsan, lockdep, hung_task,
soft_lockup, hard_lockup, rcu_stall, panic, fs_corruption.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from nixvmd.results.record import Splat

MAX_LINE = 1000
"""Text kept from one console line in a message; parsing itself reads whole lines."""

_PRINTK_PREFIX = re.compile(r"(?:<\d{1,3}>)?\[\s*(\d{1,10}\.\d{1,9})\](?:\[\s*[TC]\d+\])? ?")


def strip_printk(line: str) -> tuple[float | None, str]:
    """Split a console line into its printk timestamp (seconds) and the message.

    Handles ``[    1.234567] msg``, the caller id of CONFIG_PRINTK_CALLER
    (``[    1.234567][    T1] msg``) and a leading syslog level (``<6>``).
    The message keeps its own leading spaces (KTAP indentation lives there)
    and loses a trailing newline or carriage return.
    """
    line = line.rstrip("\r\n")
    if line.startswith(("[", "<")):
        match = _PRINTK_PREFIX.match(line)
        if match is not None:
            return float(match.group(1)), line[match.end() :]
    return None, line


class SplatKind(enum.StrEnum):
    """What kind of kernel report a splat is; the value goes into `Splat.kind`."""

    BUG = "bug"
    OOPS = "oops"
    WARNING = "warning"
    KASAN = "kasan"
    UBSAN = "ubsan"
    LOCKDEP = "lockdep"
    HUNG_TASK = "hung_task"
    SOFT_LOCKUP = "soft_lockup"
    HARD_LOCKUP = "hard_lockup"
    RCU_STALL = "rcu_stall"
    PANIC = "panic"
    FS_CORRUPTION = "fs_corruption"


_LOCKDEP_WHAT = (
    r"possible circular locking dependency|possible recursive locking|inconsistent lock state"
    r"|possible irq lock inversion|suspicious RCU usage|bad unlock balance|held lock freed"
    r"|lock held when returning to user space|[\w-]+-safe -> [\w-]+-unsafe lock order"
    r"|nested lock was not taken|bad contention detected|lock held at task exit"
    r"|possible deadlock|chain_key collision"
)

# Ordered: the first match wins, so the specific forms come before `BUG:` and `WARNING:`.
# All are anchored at the start of the message, so that a diff line quoting a
# splat (fstests prints them indented, with +/-) is not one.
_RULES: tuple[tuple[SplatKind, re.Pattern[str]], ...] = (
    (SplatKind.PANIC, re.compile(r"Kernel panic - not syncing")),
    (SplatKind.SOFT_LOCKUP, re.compile(r"(?:watchdog: )?BUG: soft lockup")),
    (SplatKind.HARD_LOCKUP, re.compile(r"(?:NMI )?(?:watchdog: )?Watchdog detected hard LOCKUP")),
    (SplatKind.RCU_STALL, re.compile(r"(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected stall")),
    (SplatKind.HUNG_TASK, re.compile(r"INFO: task .* blocked for more than \d+ seconds")),
    (SplatKind.KASAN, re.compile(r"BUG: (?:KASAN|KFENCE): ")),
    (SplatKind.UBSAN, re.compile(r"UBSAN: ")),
    (SplatKind.LOCKDEP, re.compile(rf"\[? ?(?:WARNING|INFO|ERR|BUG): (?:{_LOCKDEP_WHAT})")),
    (
        SplatKind.OOPS,
        re.compile(
            r"BUG: kernel NULL pointer dereference|BUG: unable to handle"
            r"|Oops(?::| -)|Internal error: Oops|Unable to handle kernel"
            r"|general protection fault"
        ),
    ),
    (SplatKind.BUG, re.compile(r"kernel BUG at |BUG: |BUG \S+ .*remaining|XFS: Assertion failed")),
    (SplatKind.WARNING, re.compile(r"WARNING: (?:CPU: \d+ PID: \d+ at |at |kernel stack )")),
    (
        SplatKind.FS_CORRUPTION,
        re.compile(
            r"XFS \([^)]*\): (?:Corruption detected|Metadata corruption detected"
            r"|metadata I/O error|Corruption of in-memory data|Internal error"
            r"|Metadata CRC error)"
            r"|EXT4-fs error|BTRFS critical|BTRFS error"
        ),
    ),
)

# A kernel record glued after a partial userspace line on the same console
# (check prints "generic/002 3s ... " and only ends the line when the test does).
EMBEDDED_PRINTK = re.compile(r"\[\s*\d+\.\d{6}\](?:\[\s*[TC]\d+\])? ")
# A panic whose printk stamp a userspace write on another CPU got into, byte by byte
# ("crash/0[0 1      8.511845] Kernel panic - ..."): the stamp's end and the panic's own
# words are enough. Only the panic is found this way: it is the one that ends the guest
# (a sealed VM has no pvpanic event to fall back on).
TORN_PANIC = re.compile(r"\d\.\d{6}\](?:\[\s*[TC]\d+\])? (?=Kernel panic - not syncing)")
_END_MARKER = re.compile(r"---\[ end (?:trace|Kernel panic)")
_SEPARATOR = re.compile(r"={20,}\s*$")
_TASK_END = re.compile(r"\s*</TASK>")

MAX_REPORT_LINES = 400
"""A report still open after this many lines is considered over."""
REPORT_GAP_S = 1.0
"""A pause longer than this in printk time ends a report."""
MAX_LINE_KEPT = 300
"""`Splat.line` is cut to this many characters."""


# What a run makes of a console line (nixvmd.run): a panic ends the guest; one of these
# reports, followed by the guest going away, is why it went.
FATAL_KINDS = frozenset({SplatKind.PANIC})
BROKEN_KINDS = frozenset({SplatKind.OOPS, SplatKind.BUG, SplatKind.KASAN, SplatKind.SOFT_LOCKUP})
# What the kernel prints as it halts or powers off (kernel/reboot.c); after one of these
# nothing more will come: the guest stopped running.
HALT_MESSAGES = ("reboot: System halted", "reboot: Power down")


def halt_message(line: str) -> str | None:
    """The halt or power-off message in console `line`, or None."""
    return next((m for m in HALT_MESSAGES if m in line), None)


def classify(message: str) -> SplatKind | None:
    """The kind of report that `message` (timestamp already stripped) starts, or None."""
    text = message.lstrip()
    for kind, pattern in _RULES:
        if pattern.match(text):
            return kind
    return None


class _Report:
    """The report currently open: what kind, where it started, whether it has ended."""

    __slots__ = ("closed", "kind", "last_ts", "lines", "soft_closed", "test")

    def __init__(self, kind: SplatKind, test: str | None, ts: float | None) -> None:
        self.kind = kind
        self.test = test
        self.last_ts = ts
        self.lines = 0
        self.closed = False
        self.soft_closed = False


class SplatScanner:
    """Streaming scanner of console lines; `feed` returns the splat a line starts, if any.

    Memory is the splats found (at most `max_splats`, the rest are only counted)
    plus a constant; it does not grow with the number of lines.
    """

    def __init__(self, max_splats: int = 1000) -> None:
        self.max_splats = max_splats
        self.splats: list[Splat] = []
        self.dropped = 0
        self._test: str | None = None
        self._report: _Report | None = None

    @property
    def test(self) -> str | None:
        """The test splats are currently attributed to."""
        return self._test

    def set_test(self, name: str | None) -> None:
        """Attribute splats from now on to test `name` (None: no test is running)."""
        self._test = name

    def feed(self, line: str) -> Splat | None:
        """Scan one console line; return the Splat it starts, or None."""
        ts, message = strip_printk(line)
        kind = classify(message)
        if kind is None and "[" in message and (glued := EMBEDDED_PRINTK.search(message)):
            kind = classify(message[glued.end() :])
            if kind is not None:
                message = message[glued.end() :]
        if kind is None and (torn := TORN_PANIC.search(message)):
            kind, message = SplatKind.PANIC, message[torn.end() :]
        report = self._report
        if report is not None:
            self._advance(report, ts, message)
        if kind is None:
            return None
        if report is not None and self._folds_into(report, kind):
            return None
        self._report = _Report(kind, self._test, ts)
        splat = Splat(kind=kind.value, line=message.strip()[:MAX_LINE_KEPT], test=self._test)
        if len(self.splats) < self.max_splats:
            self.splats.append(splat)
        else:
            self.dropped += 1
        return splat

    def _advance(self, report: _Report, ts: float | None, message: str) -> None:
        """Move the open report on by one line and note whether this line ends it."""
        report.lines += 1
        if report.lines > MAX_REPORT_LINES or report.test != self._test:
            report.closed = True
        if ts is not None:
            if report.last_ts is not None and ts - report.last_ts > REPORT_GAP_S:
                report.closed = True
            report.last_ts = ts
        framed = report.kind in (SplatKind.KASAN, SplatKind.UBSAN)
        if _END_MARKER.search(message) or (framed and _SEPARATOR.match(message)):
            report.closed = True
        elif _TASK_END.match(message):
            report.soft_closed = True

    @staticmethod
    def _folds_into(report: _Report, kind: SplatKind) -> bool:
        """Whether a line of `kind` belongs to the open `report` rather than starting a new one."""
        if report.closed:
            return False
        if kind is SplatKind.PANIC:
            return report.kind is SplatKind.PANIC
        if report.soft_closed:
            return kind is report.kind
        return True


def scan_lines(lines: Iterable[str], test: str | None = None) -> list[Splat]:
    """All splats in `lines` (e.g. a dmesg file), attributed to `test`."""
    scanner = SplatScanner()
    scanner.set_test(test)
    for line in lines:
        scanner.feed(line)
    return scanner.splats
