"""What every suite provides to a run: the guest job, live progress, and the tests at the end."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nixvmd.config.schema import Config
from nixvmd.guest.protocol import MAGIC, GuestJob
from nixvmd.results.record import MAX_HEADLINE, SuspectName, TestResult, cut
from nixvmd.results.space import write_atomic

TAIL_LINES = 10
"""Lines of a command's output kept in its failure's message."""
OUTPUT_LINES_KEPT = 200
"""Lines of a job's output kept for its run's output.log."""
OUTPUT_LOG = "output.log"


@dataclass(frozen=True)
class Progress:
    """Where a suite is: the running test, tests done, tests expected (None: unknown)."""

    test: str | None = None
    done: int = 0
    total: int | None = None
    eta_s: float | None = None  # seconds left, from the previous durations of the same tests


class SuiteRun(Protocol):
    """One suite's part in one run (`SuiteRunBase` gives the optional parts a default)."""

    name: str

    @property
    def suspect_lines(self) -> Sequence[SuspectName]:
        """Console lines that looked like a known test's name garbled (kept in the record)."""
        ...

    def deadline(self) -> tuple[float, str] | None:
        """(monotonic time, why) by which the running test must end, else the run times out."""
        ...

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

    def verdicts(self) -> Sequence[TestResult]:
        """The tests whose verdict the console has shown so far, in order (only ever grows)."""
        ...

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        """The tests of the run; `complete` is False when the guest died or timed out.

        Raises SuiteError when a complete run left nothing to judge the kernel by
        (KUnit: no KTAP on the console at all); the run then ends `error`.
        Files written into `run_dir` go through nixvmd.results.space, so no room for them
        is a StateSpaceError (the run then ends `error`), never a partial file.
        """
        ...


class SuiteKind(Protocol):
    """A kind of suite (`suite.kind`): makes its runs from a config, narrows them to some tests,
    splits a run into shards."""

    name: str

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        """A fresh SuiteRun for one run of `config` (`tests`: only those, after `narrowed`)."""
        ...

    def ordered(
        self, config: Config, tests: tuple[str, ...], early: Collection[str]
    ) -> tuple[Config, tuple[str, ...]]:
        """`config` and `tests` with the `early` tests run first, if this kind can order its tests."""
        ...

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        """`config` for a run of `tests` only; ConfigError when this kind cannot take them."""
        ...

    def split(self, config: Config, n: int, previous: Sequence[TestResult]) -> list[tuple[str, ...]]:
        """The tests of up to `n` shards that together are the whole run, each in the order to run.

        `previous`: the last comparable run's tests (their names and durations). [] means
        this run cannot be split (the kind, or a config it cannot see into, runs in one VM).
        A shard's run is `narrowed(config, tests)` and `from_config(narrowed, tests)`.
        """
        ...


class SuiteRunBase:
    """The defaults of a suite without per-test deadlines or suspect lines."""

    suspect_lines: Sequence[SuspectName] = ()

    def deadline(self) -> tuple[float, str] | None:
        """No deadline but the run's own `suite.timeout`."""
        return None

    def verdicts(self) -> Sequence[TestResult]:
        """No verdict before the run's end."""
        return ()


def failure_message(why: str, output: list[str]) -> str:
    """A failed command's message: `why` and its last line of output as the headline
    (``exit status 1: mount: /mnt: wrong fs type``), then its last lines of output."""
    tail = [line.rstrip() for line in output[-TAIL_LINES:] if line.strip()]
    headline = cut(f"{why}: {tail[-1].strip()}" if tail else why, MAX_HEADLINE)
    return "\n".join([headline, *tail])


class JobWindow:
    """The guest job's stretch of the console: from the agent's `start` frame to its `exit`,
    and the last OUTPUT_LINES_KEPT non-blank lines printed in it (the agent's frames left out)."""

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.tail: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)

    @property
    def running(self) -> bool:
        """Whether the job has started and not yet exited."""
        return self.started and not self.finished

    def guest_event(self, event: str) -> None:
        """Follow the agent's frames: `start` opens the window, `exit` closes it."""
        if event == "start":
            self.started = True
        elif event == "exit":
            self.finished = True

    def console_line(self, line: str) -> None:
        """Keep `line` in the tail if the job printed it."""
        if self.running and MAGIC not in line and line.strip():
            self.tail.append(line)

    def save(self, run_dir: Path) -> str:
        """Write the tail to `run_dir`/output.log; its name, as a test's artefact."""
        text = "".join(f"{line}\n" for line in self.tail)
        write_atomic(run_dir / OUTPUT_LOG, text, "writing the suite's output")
        return OUTPUT_LOG

    def failure(self, why: str) -> str:
        """A failed job's message: `why`, then the tail (see failure_message)."""
        return failure_message(why, list(self.tail))
