"""One run of the daemon's: its record from the start, progress into status and events, reruns.

The run itself (boot, suite, outcome) is `execute_run`; this is the daemon's side of it:
what status and subscribers see while it goes on, the "tested" memory, the report after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nixvmd.config.schema import Config
from nixvmd.daemon.regression_news import watch_verdicts
from nixvmd.daemon.state import Phase
from nixvmd.daemon.tested import key_of
from nixvmd.errors import StateSpaceError
from nixvmd.results.history import compare_with_history, earlier_results, early_for, rerun_failures
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.run.execute import PrepareLaunch, RunHooks, execute_run
from nixvmd.run.resume import execute_resuming, known_tests
from nixvmd.suite.base import Progress, SuiteRun
from nixvmd.suite.registry import make_suite, run_first, suite_name, with_tests
from nixvmd.vm.machine import Machine
from nixvmd.watch.kernel_image import KernelImage, build_of

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")


def prepare_launch(daemon: Daemon, config: Config, kernel: KernelImage, suite: SuiteRun) -> PrepareLaunch:
    """How a run of `suite` on `kernel` gets its QEMU launch: from the backend in use."""
    return functools.partial(daemon.backend.prepare, config, kernel, suite.job())


async def run_once(
    daemon: Daemon, kernel: KernelImage, config: Config, tests: tuple[str, ...] = ()
) -> RunRecord:
    """One run with `kernel`: boot, suite, record, report (`tests`: only those)."""
    key = None if tests else key_of(config, kernel, daemon.backend)  # a narrowed run judges a part only
    config = with_tests(config, tests)
    try:
        run_id, run_dir = daemon.store.new_run_dir()
    except StateSpaceError as exc:
        daemon.no_space(exc)
        raise
    space_errors: list[StateSpaceError] = []
    record = RunRecord(
        run_id,
        suite_name(config),
        str(kernel.path),
        kernel.release,
        str(config.image.backend),
        time.time(),
        narrowed_to=list(tests),
        kernel_build=build_of(kernel.version),
    )
    previous = earlier_results(daemon.store, record)
    early = early_for(daemon.store, record, previous)
    if (config, tests) != (ordered := run_first(config, tests, early)):
        log.info("run %s: first what failed or was fixed lately: %s", run_id, ", ".join(early))
        config, tests = ordered
    suite = make_suite(config, tests)
    daemon.current_record = record
    daemon.testing = (key, record) if key is not None else None
    daemon.current = {
        "run_id": run_id,
        "test": None,
        "done": 0,
        "total": None,
        "phase": "booting",
        "started_at": record.started_at,
    }
    daemon.events.publish("run", phase="start", run_id=run_id, kernel_version=record.kernel_version)

    def on_phase(phase: str) -> None:
        if daemon.current is not None:
            daemon.current["phase"] = phase
        daemon.set_state(Phase(phase))

    def on_progress(progress: Progress) -> None:
        if daemon.current is not None:
            daemon.current.update(
                test=progress.test, done=progress.done, total=progress.total, eta_s=progress.eta_s
            )
        daemon.events.publish(
            "test",
            run_id=run_id,
            test=progress.test,
            done=progress.done,
            total=progress.total,
            eta_s=progress.eta_s,
        )
        daemon.sd.status(daemon.status_line())

    def on_console(line: str) -> None:
        daemon.events.publish("console", run_id=run_id, line=line)

    def on_machine(machine: Machine | None) -> None:
        daemon.machine = machine

    def on_console_bytes(chunk: bytes) -> None:
        if daemon.events.subscribers:
            text = chunk.decode("utf-8", "surrogateescape")
            daemon.events.publish("console-bytes", run_id=run_id, text=text)

    def on_space_error(error: StateSpaceError) -> None:
        space_errors.append(error)
        daemon.no_space(error)

    def on_resume(note: str) -> None:
        if daemon.current is not None:
            daemon.current["phase"] = "resuming"
        daemon.events.publish("run", phase="resume", run_id=run_id, note=note)

    hooks = RunHooks(
        on_phase=on_phase,
        on_console=on_console,
        on_progress=on_progress,
        on_machine=on_machine,
        on_console_bytes=on_console_bytes,
        on_space_error=on_space_error,
        on_resume=on_resume,
        on_verdict=watch_verdicts(daemon, record, config, previous),
    )
    try:
        record.git = await daemon.builds.git_state(kernel, config.kernel.tree)  # read already, mostly
        log.info("run %s: %s on %s", run_id, suite.name, record.build)
        # Crash resume needs the test list before the run (known_tests: split_tests(config, 1)).
        listed = known_tests(config) if config.suite.resume_limit > 0 else ()
        if listed:
            await execute_resuming(
                config,
                kernel,
                listed,
                record,
                run_dir,
                lambda narrowed, part: prepare_launch(daemon, narrowed, kernel, part),
                daemon.verdicts,
                hooks,
                store=daemon.store,
                resume_limit=config.suite.resume_limit,
                first_as_configured=True,
            )
        else:
            await execute_run(
                config,
                kernel,
                suite,
                record,
                run_dir,
                prepare_launch(daemon, config, kernel, suite),
                daemon.verdicts,
                hooks,
                store=daemon.store,
            )
        compare_with_history(record, daemon.store, config)
        # A rerun's verdicts are no news of this run's: the end compares them.
        await rerun_new_failures(
            daemon, record, kernel, config, dataclasses.replace(hooks, on_verdict=lambda result: None)
        )
        if key is not None:
            daemon.tested.remember(key, record)
    except asyncio.CancelledError:
        if record.outcome is None:  # cancelled while the tree's git state was read: nothing booted
            record.outcome, record.reason = Outcome.CANCELLED, record.reason or "cancelled"
            record.finished_at = time.time()
            daemon.store.save(record)
        raise
    finally:
        daemon.current = None
        daemon.current_record = None
        daemon.testing = None
        daemon.last_run = record
        if not space_errors and daemon.kernel_space_error is None:
            daemon.room_again()
        daemon.rest()
        daemon.events.publish("run", phase="end", run_id=run_id, **record.summary())
        log.info("run %s %s%s", run_id, record.outcome, f": {record.reason}" if record.reason else "")
    daemon.spawn(daemon.report(record, config))
    return record


async def rerun_new_failures(
    daemon: Daemon, record: RunRecord, kernel: KernelImage, config: Config, hooks: RunHooks
) -> None:
    """Run new failures again (suite.rerun_failed times); those that pass are flaky."""

    async def execute(narrowed: Config, suite: SuiteRun, rerun: RunRecord, run_dir: Path) -> None:
        if daemon.current is not None:
            daemon.current["phase"] = "rerunning"
        launch = prepare_launch(daemon, narrowed, kernel, suite)
        main, daemon.current_record = daemon.current_record, rerun
        try:
            await execute_run(
                narrowed, kernel, suite, rerun, run_dir, launch, daemon.verdicts, hooks, store=daemon.store
            )
        finally:
            daemon.current_record = main

    await rerun_failures(record, kernel, config, daemon.store, execute)


def retrieve_run(task: asyncio.Task[RunRecord]) -> None:
    """Collect a run task's failure: no room for a run directory was reported; anything else is a bug."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, StateSpaceError):
        log.error("a run failed inside nixvmd", exc_info=error)
