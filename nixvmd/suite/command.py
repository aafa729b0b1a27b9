"""The `command` suite: one shell command in the guest; exit status 0 is a pass.

A failure's message: the headline ``exit status N: <the last line it printed>``, then the
last lines of its output.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from nixvmd.guest.protocol import MAGIC, GuestJob
from nixvmd.results.record import TestResult, TestStatus
from nixvmd.results.space import write_atomic
from nixvmd.suite.base import Progress, SuiteRunBase, failure_message

OUTPUT_LINES_KEPT = 200


class CommandSuite(SuiteRunBase):
    """Runs `command` with /bin/sh in the guest and keeps the tail of its output."""

    name = "command"

    def __init__(self, command: str, tests: tuple[str, ...] = ()) -> None:
        self.command = command
        env = (("NIXVMD_TESTS", " ".join(tests)),) if tests else ()
        self._job = GuestJob(kind="command", command=command, env=env)
        self._started = False
        self._finished = False
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)

    def job(self) -> GuestJob:
        return self._job

    def guest_event(self, event: str, argument: str) -> None:
        if event == "start":
            self._started = True
        elif event == "exit":
            self._finished = True

    def console_line(self, line: str) -> None:
        if MAGIC in line:
            return
        if self._started and not self._finished and line.strip():
            self.output.append(line)

    def progress(self) -> Progress:
        return Progress(
            test=self.command if self._started and not self._finished else None,
            done=1 if self._finished else 0,
            total=1,
        )

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        write_atomic(
            run_dir / "output.log", "".join(f"{line}\n" for line in self.output), "writing the suite's output"
        )
        output = list(self.output)
        if exit_status is None:
            status, message = TestStatus.ERROR, failure_message("the command did not finish", output)
        elif exit_status == 0:
            status, message = TestStatus.PASS, ""
        else:
            status, message = TestStatus.FAIL, failure_message(f"exit status {exit_status}", output)
        return [TestResult(name=self.command, status=status, message=message, artefacts=("output.log",))]
