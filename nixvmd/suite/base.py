"""What every suite provides to a run: the guest job, live progress, and the tests at the end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nixvmd.guest.protocol import GuestJob
from nixvmd.results.record import MAX_HEADLINE, TestResult, cut

TAIL_LINES = 10
"""Lines of a command's output kept in its failure's message."""


@dataclass(frozen=True)
class Progress:
    """Where a suite is: the running test, tests done, tests expected (None: unknown)."""

    test: str | None = None
    done: int = 0
    total: int | None = None
    eta_s: float | None = None  # seconds left, from the previous durations of the same tests


class SuiteRun(Protocol):
    """One suite's part in one run."""

    name: str

    def job(self) -> GuestJob:
        """What the guest agent should run."""
        ...

    def console_line(self, line: str) -> None:
        """Called with every console line, in order (for output, progress and results)."""
        ...

    def guest_event(self, event: str, argument: str) -> None:
        """Called with each agent frame (start, exit, ...), whichever channel carried it."""
        ...

    def progress(self) -> Progress: ...

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        """The tests of the run; `complete` is False when the guest died or timed out.

        Raises SuiteError when a complete run left nothing to judge the kernel by
        (KUnit: no KTAP on the console at all); the run then ends `error`.
        Files written into `run_dir` go through nixvmd.results.space, so no room for them
        is a StateSpaceError (the run then ends `error`), never a partial file.
        """
        ...


def failure_message(why: str, output: list[str]) -> str:
    """A failed command's message: `why` and its last line of output as the headline
    (``exit status 1: mount: /mnt: wrong fs type``), then its last lines of output."""
    tail = [line.rstrip() for line in output[-TAIL_LINES:] if line.strip()]
    headline = cut(f"{why}: {tail[-1].strip()}" if tail else why, MAX_HEADLINE)
    return "\n".join([headline, *tail])
