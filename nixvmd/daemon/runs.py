"""One run of the daemon's: its record from the start, progress into status and events, reruns.

The run itself (boot, suite, outcome) is `execute_run`; this is the daemon's side of it:
what status and subscribers see while it goes on, the "tested" memory, the report after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixvmd.config.schema import Config, Engine
from nixvmd.daemon.live_run import LiveRun
from nixvmd.daemon.regression_news import watch_verdicts
from nixvmd.daemon.tested import key_of
from nixvmd.distribute.on_nix import NixShards
from nixvmd.distribute.splits import same_split, split_key
from nixvmd.errors import ConfigError, StateSpaceError
from nixvmd.image.dev_tree_build import build_for_run
from nixvmd.results.history import compare_with_history, earlier_results, early_for, rerun_failures
from nixvmd.results.record import Outcome, RunRecord, TestResult
from nixvmd.run.execute import PrepareLaunch, RunHooks, execute_run
from nixvmd.run.resume import execute_resuming, known_tests
from nixvmd.run.shard_count import shard_count
from nixvmd.run.shards import ShardHooks, execute_sharded
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.registry import make_suite, run_first, split_tests, suite_name, with_tests
from nixvmd.suite.schedule import first
from nixvmd.vm.gdbstub import GdbMode
from nixvmd.watch.kernel_image import KernelImage, build_of

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")


def prepare_launch(daemon: Daemon, config: Config, suite: SuiteRun, *, kernel: KernelImage) -> PrepareLaunch:
    """How a run of `suite` on `kernel` gets its QEMU launch: from the backend in use."""
    return functools.partial(daemon.backend.prepare, config, kernel, suite.job())


def shard_lists(
    config: Config, previous: Sequence[TestResult] | None, early: Sequence[str]
) -> list[tuple[str, ...]]:
    """The test lists of the run's shards, each with its `early` tests first; [] for a run in
    one VM (one shard, or a run its kind cannot split). The split itself never makes more
    shards than tests, so "auto" is counted here as if tests were no limit."""
    n = shard_count(config, sys.maxsize)
    if n < 2:
        return []
    try:
        shards = split_tests(config, n, previous or ())
    except ConfigError as exc:  # check says what is wrong with the args, in the run
        log.warning("the run cannot be split into shards, it runs in one VM: %s", exc)
        return []
    return [tuple(first(s, early)) for s in shards] if len(shards) >= 2 else []


def split_as_before(
    daemon: Daemon,
    config: Config,
    kernel: KernelImage,
    tests: tuple[str, ...],
    shards: list[tuple[str, ...]],
    key: str | None,
) -> list[tuple[str, ...]]:
    """`shards` of a run on Nix as the same inputs were split before (distribute/splits.py), so
    the same kernel again makes the same derivations: a cache hit. `key`: the run's key (None
    for a narrowed run, whose own key is taken here); a run whose key is unknown is split anew."""
    inputs = key if key is not None or not tests else key_of(config, kernel, daemon.backend)
    if inputs is None:
        return shards
    return same_split(config.daemon.state_dir, split_key(inputs, tests), shards)


async def run_once(
    daemon: Daemon,
    kernel: KernelImage,
    config: Config,
    tests: tuple[str, ...] = (),
    *,
    fresh: bool = False,
    reason: str = "requested",
    gdb: GdbMode | None = None,
) -> RunRecord:
    """One run with `kernel`: boot, suite, record, report (`tests`: only those; `fresh`: no
    result Nix built before is reused, with [distribute] engine = "nix"; `reason`: why it
    starts, `current.reason` and the record's `cause`; `gdb`: one VM with QEMU's gdbstub, no
    shards, no resume, and no "tested" memory: nokaslr is another boot)."""
    # A narrowed run judges a part only.
    key = None if tests or gdb else key_of(config, kernel, daemon.backend)
    config = with_tests(config, tests)
    try:
        run_id, run_dir = daemon.store.new_run_dir()
    except StateSpaceError as exc:
        daemon.no_space(exc)
        raise
    record = new_record(config, kernel, run_id, suite_name(config), tests, cause=reason)
    previous = earlier_results(daemon.store, record)
    early = early_for(daemon.store, record, previous)
    shards = shard_lists(config, previous, early) if gdb is None else []
    on_nix = config.distribute.engine is Engine.NIX and gdb is None
    if on_nix and not shards:
        shards = [tests]  # one derivation for the whole run (`tests`: as narrowed, () for all)
    elif on_nix:
        shards = split_as_before(daemon, config, kernel, tests, shards, key)
    if not shards and (config, tests) != (ordered := run_first(config, tests, early)):
        log.info("run %s: first what failed or was fixed lately: %s", run_id, ", ".join(early))
        config, tests = ordered
    suite = make_suite(config, tests)
    daemon.current_record = record
    daemon.testing = (key, record) if key is not None else None
    live = LiveRun(daemon, record, shards, watch_verdicts(daemon, record, config, previous))
    daemon.events.publish("run", phase="start", run_id=run_id, kernel_version=record.kernel_version)
    hooks = live.hooks()
    launcher = functools.partial(prepare_launch, daemon, kernel=kernel)
    try:
        record.git = await daemon.builds.git_state(kernel, config.kernel.tree)  # read already, mostly
        log.info("run %s: %s on %s (%s)", run_id, suite.name, record.build, reason)
        # Crash resume needs the test list before the run (known_tests: split_tests(config, 1)).
        listed = known_tests(config) if config.suite.resume_limit > 0 and not shards and gdb is None else ()
        if not await build_for_run(
            config, record, run_dir, daemon.store, functools.partial(live.phase, None)
        ):
            pass  # the record says why: the fstests tree's build failed, nothing booted
        elif shards:
            sizes = "/".join(str(len(s)) for s in shards)
            where = "Nix's builders" if on_nix else "VMs here"
            log.info("run %s: %d shards of %s tests on %s", run_id, len(shards), sizes, where)
            await execute_sharded(
                config,
                kernel,
                shards,
                record,
                run_dir,
                launcher,
                daemon.verdicts,
                ShardHooks(live.hooks, live.shard_end),
                store=daemon.store,
                run_shard=NixShards(fresh) if on_nix else execute_resuming,
            )
        elif listed:
            await execute_resuming(
                config,
                kernel,
                listed,
                record,
                run_dir,
                launcher,
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
                prepare_launch(daemon, config, suite, kernel=kernel),
                daemon.verdicts,
                hooks,
                store=daemon.store,
                gdb=gdb,
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
        if not live.space_errors and daemon.kernel_space_error is None:
            daemon.room_again()
        daemon.rest()
        daemon.events.publish("run", phase="end", run_id=run_id, **record.summary())
        log.info("run %s %s%s", run_id, record.outcome, f": {record.reason}" if record.reason else "")
    daemon.spawn(daemon.report(record, config))
    daemon.spawn(daemon.bisecting.after_run(record, config))
    return record


async def rerun_new_failures(
    daemon: Daemon, record: RunRecord, kernel: KernelImage, config: Config, hooks: RunHooks
) -> None:
    """Run new failures again (suite.rerun_failed times); those that pass are flaky."""

    async def execute(narrowed: Config, suite: SuiteRun, rerun: RunRecord, run_dir: Path) -> None:
        if daemon.current is not None:
            daemon.current["phase"] = "rerunning"
        launch = prepare_launch(daemon, narrowed, suite, kernel=kernel)
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


def new_record(
    config: Config, kernel: KernelImage, run_id: str, suite: str, tests: tuple[str, ...], **fields: Any
) -> RunRecord:
    """The record of a run starting now (`tests`: what it is narrowed to; `fields`: the rest)."""
    return RunRecord(
        run_id,
        suite,
        str(kernel.path),
        kernel.release,
        str(config.image.backend),
        time.time(),
        narrowed_to=list(tests),
        kernel_build=build_of(kernel.version),
        **fields,
    )
