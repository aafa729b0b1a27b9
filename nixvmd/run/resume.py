"""Crash resume: one VM after another over a run's test list until every test has its verdict.

`execute_resuming` runs the tests in order with `execute_run`, on a config narrowed to them.
When the guest crashes, halts or hangs past a test's hang limit inside test T, T gets its
verdict (crashed or timeout: the reason, its splats and the console around them as its
message), the tests that finished keep theirs, and those not yet started go on in a fresh
VM — at most `resume_limit` times (0: one VM, today's run). The first VM works in the run
directory, the j-th fresh one in `<run>/resume/<j>/` (its console.log, qemu.log, results/);
run.json's `attempts` lists them. The decisions are pure functions in run/attempts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError, StateSpaceError
from nixvmd.results.record import Attempt, Outcome, RunRecord, TestResult
from nixvmd.results.space import make_dirs
from nixvmd.results.store import RunStore
from nixvmd.run.attempts import (
    STOPPING,
    console_excerpt,
    merged_outcome,
    not_run,
    plain_name,
    relocated,
    remaining,
    resume_note,
    stop_anchor,
    stop_verdict,
    stopped_in,
    why_not_run,
    with_verdict,
)
from nixvmd.run.execute import PrepareLaunch, execute_run
from nixvmd.run.listen import RunHooks
from nixvmd.suite.base import Progress, SuiteRun
from nixvmd.suite.registry import make_suite, split_tests, with_tests
from nixvmd.suite.xfstests.suite import planned_tests
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger(__name__)

Launcher = Callable[[Config, SuiteRun], PrepareLaunch]
"""How a run of a (narrowed) config's suite gets its QEMU launch: the backend's prepare."""

CONSOLE_TAIL = 1 << 20
"""How much of an attempt's console.log end is searched for the crash's excerpt (bytes)."""


def resumable(config: Config) -> bool:
    """Whether a run of `config` can go on after a crash: its results name tests as its list does.

    fstests over several sections runs section after section and names tests
    ``section:test``: what is left after a crash is not a list of tests, so no resume (yet).
    """
    if str(config.suite.kind) != "xfstests":
        return True
    xfstests = config.xfstests
    return len(xfstests.run_sections or [s.name for s in xfstests.sections]) <= 1


def known_tests(config: Config) -> tuple[str, ...]:
    """The run's tests in the order they run, when the host knows them before the run; () otherwise.

    The suite's one-shard split (fstests: the args expanded from the tree's group lists, when
    it is readable here), else the tests fstests args name one by one. Args the host cannot
    expand are check's to refuse in the guest, as without resume.
    """
    if not resumable(config):
        return ()
    try:
        lists = split_tests(config, 1)
    except (ConfigError, OSError):
        lists = []
    if lists:
        return lists[0]
    if str(config.suite.kind) == "xfstests":
        return tuple(planned_tests(config.xfstests) or ())
    return ()


async def execute_resuming(
    config: Config,
    kernel: KernelImage,
    tests: tuple[str, ...],
    record: RunRecord,
    run_dir: Path,
    launcher: Launcher,
    verdicts: AccelVerdicts,
    hooks: RunHooks | None = None,
    *,
    store: RunStore | None,
    resume_limit: int,
    first_as_configured: bool = False,
) -> RunRecord:
    """Run `tests` against `kernel` into `record`, in fresh VMs after crashes (see the module doc).

    Cancellation ends the record `cancelled` (with the verdicts so far) and leaves no QEMU.
    `first_as_configured`: `tests` are `config`'s whole run, and the first VM runs `config` as
    it is (check with the user's args and its own order); only fresh VMs are narrowed.
    """
    hooks = hooks or RunHooks()
    if resume_limit <= 0 or not tests or not resumable(config):
        narrowed = with_tests(config, tests)
        suite = make_suite(narrowed, tests)
        launch = launcher(narrowed, suite)
        return await execute_run(
            narrowed, kernel, suite, record, run_dir, launch, verdicts, hooks, store=store
        )
    resume = _Resume(
        config, kernel, record, run_dir, launcher, verdicts, hooks, store, resume_limit, first_as_configured
    )
    return await resume.run(tuple(dict.fromkeys(tests)))


@dataclass
class _Follow:
    """One attempt's hooks: the owner's, progress counted over the whole list, the running test kept."""

    hooks: RunHooks
    done_before: int
    running: str | None = None

    def progress(self, progress: Progress) -> None:
        self.running = progress.test
        total = None if progress.total is None else self.done_before + progress.total
        self.hooks.on_progress(
            dataclasses.replace(progress, done=self.done_before + progress.done, total=total)
        )

    def attempt_hooks(self) -> RunHooks:
        return dataclasses.replace(self.hooks, on_progress=self.progress)


@dataclass
class _Resume:
    """The state of one resuming run: the merged record, and what each attempt needs."""

    config: Config
    kernel: KernelImage
    record: RunRecord
    run_dir: Path
    launcher: Launcher
    verdicts: AccelVerdicts
    hooks: RunHooks
    store: RunStore | None
    limit: int
    first_as_configured: bool

    async def run(self, tests: tuple[str, ...]) -> RunRecord:
        left = tests
        try:
            if self.store is not None:
                self.store.begin(self.record)
            for restart in range(self.limit + 1):
                attempt, results = await self._attempt(left, restart, done_before=len(tests) - len(left))
                left = remaining(left, results, attempt.stopped_in)
                if attempt.stopped_in is None or not left or restart == self.limit:
                    break
                # The stopped test's verdict is news while the run goes on (a first regression).
                for result in results:
                    if plain_name(result.name) == attempt.stopped_in:
                        self.hooks.on_verdict(result)
                note = resume_note(attempt, len(left), restart + 1, self.limit)
                log.info("run %s: %s", self.record.id, note)
                self.hooks.on_resume(note)
        except asyncio.CancelledError:
            self._end(())
            raise
        except StateSpaceError as exc:
            self.hooks.on_space_error(exc)
            self.record.attempts.append(Attempt(left, Outcome.ERROR, str(exc)))
        except Exception as exc:
            # A bug in nixvmd: the run still ends, `error`, with its record.
            log.exception("run %s failed inside nixvmd", self.record.id)
            self.record.attempts.append(Attempt(left, Outcome.ERROR, f"internal error in nixvmd: {exc!r}"))
        self._end(left)
        return self.record

    async def _attempt(
        self, tests: tuple[str, ...], restart: int, done_before: int
    ) -> tuple[Attempt, list[TestResult]]:
        """One VM over `tests`; its verdicts go into the record (and are returned), the VM into `attempts`."""
        directory = f"resume/{restart}" if restart else ""
        attempt_dir = self.run_dir / directory if directory else self.run_dir
        make_dirs(attempt_dir, "creating the directory of a resumed run's fresh VM")
        whole = restart == 0 and self.first_as_configured
        narrowed = self.config if whole else with_tests(self.config, tests)
        suite = make_suite(narrowed, () if whole else tests)
        follow = _Follow(self.hooks, done_before)
        part = dataclasses.replace(
            self.record,
            tests=[],
            splats=[],
            suspect_lines=[],
            phases={},
            attempts=[],
            vmcore=None,
            vmcore_note="",
        )
        launch = self.launcher(narrowed, suite)
        try:
            await execute_run(
                narrowed, self.kernel, suite, part, attempt_dir, launch, self.verdicts, follow.attempt_hooks()
            )
        finally:
            absorbed = self._absorb(part, tests, directory, follow.running)
        return absorbed

    def _absorb(
        self, part: RunRecord, tests: tuple[str, ...], directory: str, running: str | None
    ) -> tuple[Attempt, list[TestResult]]:
        """Fold one attempt's record into the run's, the stopped test's verdict made here."""
        record = self.record
        outcome = part.outcome or Outcome.ERROR
        stopped = stopped_in(outcome, running)
        results = relocated(part.tests, directory)
        if stopped is not None and outcome in STOPPING:
            console = f"{directory}/console.log" if directory else "console.log"
            excerpt = console_excerpt(_tail_lines(self.run_dir / console), stop_anchor(part, stopped))
            results = with_verdict(results, stop_verdict(part, stopped, excerpt, console))
        record.tests += results
        record.splats += part.splats
        record.suspect_lines += part.suspect_lines
        for name, seconds in part.phases.items():
            record.phases[name] = round(record.phases.get(name, 0.0) + seconds, 4)
        record.accel = record.accel or part.accel
        record.command = record.command or part.command
        record.environment = record.environment or part.environment
        record.kernel_version = record.kernel_version or part.kernel_version
        # Each crashed VM's vmcore is in its own directory (resume/<j>/vmcore); the run's is the first.
        record.vmcore = record.vmcore or part.vmcore
        if part.vmcore_note:
            where = f"{directory}: " if directory else ""
            record.vmcore_note = "; ".join(n for n in (record.vmcore_note, where + part.vmcore_note) if n)
        attempt = Attempt(tests, outcome, part.reason, directory, stopped, part.vmcore)
        record.attempts.append(attempt)
        if outcome in (Outcome.PASSED, Outcome.FAILED):
            record.exit_status = part.exit_status
        self._save(final=False)
        return attempt, results

    def _end(self, left: tuple[str, ...]) -> None:
        """The merged outcome; tests a stopped run never reached recorded as not run."""
        record = self.record
        outcome, reason = merged_outcome(record.attempts)
        # Whoever cancelled said why on the run's record (a new kernel, nixvmctl stop).
        record.outcome, record.reason = (
            outcome,
            (record.reason or reason) if outcome is Outcome.CANCELLED else reason,
        )
        if record.outcome in STOPPING:
            record.exit_status = None
            if left:
                record.tests += not_run(left, why_not_run(record.attempts[-1], self.limit))
        if len(record.attempts) == 1:
            record.attempts = []  # one VM: a run like any other
        record.finished_at = time.time()
        self._save(final=True)

    def _save(self, *, final: bool) -> None:
        """Write the merged record (still `running` between attempts); no room: the run ends error."""
        if self.store is None:
            return
        outcome = self.record.outcome
        if not final:
            self.record.outcome = Outcome.RUNNING
        try:
            self.store.save(self.record)
        except StateSpaceError as exc:
            self.hooks.on_space_error(exc)
            if final and outcome not in (Outcome.ERROR, Outcome.CANCELLED):
                self.record.outcome, self.record.reason = Outcome.ERROR, str(exc)
        finally:
            if not final:
                self.record.outcome = outcome


def _tail_lines(path: Path) -> list[str]:
    """The last CONSOLE_TAIL bytes of a console log as lines; [] when it cannot be read."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - CONSOLE_TAIL))
        return f.read().decode(errors="replace").splitlines()
    return []
