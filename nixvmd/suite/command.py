"""The `command` suite: one shell command in the guest; exit status 0 is a pass.

A failure's message: the headline ``exit status N: <the last line it printed>``, then the
last lines of its output.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from nixvmd.guest.protocol import GuestJob
from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.base import JobWindow, Progress, SuiteRunBase


class CommandSuite(SuiteRunBase):
    """Runs `command` with /bin/sh in the guest and keeps the tail of its output."""

    name = "command"

    def __init__(self, command: str, tests: tuple[str, ...] = ()) -> None:
        self.command = command
        env = (("NIXVMD_TESTS", " ".join(tests)),) if tests else ()
        self._job = GuestJob(kind="command", command=command, env=env)
        self.window = JobWindow()

    @property
    def output(self) -> deque[str]:
        """The last lines the command printed."""
        return self.window.tail

    def job(self) -> GuestJob:
        return self._job

    def guest_event(self, event: str, argument: str) -> None:
        self.window.guest_event(event)

    def console_line(self, line: str) -> None:
        self.window.console_line(line)

    def progress(self) -> Progress:
        return Progress(
            test=self.command if self.window.running else None,
            done=1 if self.window.finished else 0,
            total=1,
        )

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        log = self.window.save(run_dir)
        if exit_status is None:
            status, message = TestStatus.ERROR, self.window.failure("the command did not finish")
        elif exit_status == 0:
            status, message = TestStatus.PASS, ""
        else:
            status, message = TestStatus.FAIL, self.window.failure(f"exit status {exit_status}")
        return [TestResult(name=self.command, status=status, message=message, artefacts=(log,))]
