"""One run over several VMs at once: each shard runs its part of the tests, then one record.

`execute_sharded` runs every shard list at once, each in its own directory
`<run>/shards/<k>/`: its own workspace (fresh disks with the same serials, a socket dir),
console.log and qemu.log, its own SuiteRun (the config narrowed to the shard's tests, as
`nixvmctl run --tests` narrows a run). How one shard runs is `run_shard`: `run_in_one_vm`
(one `execute_run`), or anything of the same shape, such as crash resume's fresh VMs.
When a shard ends, its suite's results move to `<run>/results/<k>/` and its own record
is kept as `shards/<k>/shard.json`; the run's record is the merge (run/shard_merge.py).

Cancelling the run (a new kernel, `nixvmctl stop`, nixvmd stopping) cancels every shard
at once: each `execute_run` kills its QEMU and records `cancelled`, and the run ends
`cancelled` only after all of them are gone. A shard that ends `error` (nixvmd or the
host broke: no room in state_dir, QEMU would not start) cancels the others: the run is
`error` whatever they find, and what broke one shard most likely breaks the next. A
shard that crashed, timed out or failed leaves the others running: each is bounded by
its own vm.boot_timeout, suite.timeout and hang limits, and their verdicts on the other
tests are the point of running shards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nixvmd.config.schema import Config
from nixvmd.errors import NixvmdError
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.space import make_dirs, write_atomic
from nixvmd.results.store import RunStore
from nixvmd.run.execute import PrepareLaunch, execute_run
from nixvmd.run.listen import RunHooks
from nixvmd.run.shard_merge import RESULTS, merge_shards, shard_dir_name
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.registry import make_suite, with_tests
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger(__name__)

# How a shard's QEMU is launched: the backend's prepare, for the shard's config and suite.
Launcher = Callable[[Config, SuiteRun], PrepareLaunch]


class ShardRun(Protocol):
    """How one shard runs its tests: `run_in_one_vm`, or crash resume's `execute_resuming`."""

    def __call__(
        self,
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
    ) -> Awaitable[RunRecord]: ...


async def run_in_one_vm(
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
) -> RunRecord:
    """A shard's `tests` in one VM: `config` narrowed to them, one `execute_run` (no resume)."""
    narrowed = with_tests(config, tests)
    suite = make_suite(narrowed, tests)
    launch = launcher(narrowed, suite)
    return await execute_run(narrowed, kernel, suite, record, run_dir, launch, verdicts, hooks, store=store)


@dataclass
class ShardHooks:
    """How a sharded run talks back: each shard's own RunHooks, and each shard's end."""

    of_shard: Callable[[int], RunHooks] = lambda k: RunHooks()
    on_end: Callable[[int, RunRecord], None] = lambda k, record: None


@dataclass
class _Shard:
    index: int
    tests: tuple[str, ...]
    record: RunRecord
    directory: Path


async def execute_sharded(
    config: Config,
    kernel: KernelImage,
    shards: Sequence[tuple[str, ...]],
    record: RunRecord,
    run_dir: Path,
    launcher: Launcher,
    verdicts: AccelVerdicts,
    hooks: ShardHooks | None = None,
    *,
    store: RunStore | None = None,
    run_shard: ShardRun = run_in_one_vm,
) -> RunRecord:
    """Run each of `shards` (test lists) in a VM of its own, all at once, into one `record`.

    Cancellation ends it as `cancelled`, every shard's QEMU gone first (see the module's
    docstring for a shard that breaks). `run_shard` runs one shard's list in its directory.
    """
    hooks = hooks or ShardHooks()
    parts: list[_Shard] = []
    try:
        if store is not None:
            store.begin(record)
        for k, tests in enumerate(shards):
            directory = run_dir / shard_dir_name(k)
            make_dirs(directory, "creating a shard's directory")
            parts.append(_Shard(k, tests, _shard_record(record, k, tests), directory))
    except NixvmdError as exc:
        record.outcome, record.reason = Outcome.ERROR, str(exc)
        return _end(record, [], store)
    tasks = [
        asyncio.create_task(_run_shard(run_shard, part, config, kernel, run_dir, launcher, verdicts, hooks))
        for part in parts
    ]
    try:
        await _until_done(tasks, parts)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _end(record, parts, store, cancelled=True)
        raise
    return _end(record, parts, store)


def _shard_record(record: RunRecord, k: int, tests: tuple[str, ...]) -> RunRecord:
    return RunRecord(
        f"{record.id}/{shard_dir_name(k)}",
        record.suite,
        record.kernel_path,
        record.kernel_version,
        record.backend,
        time.time(),
        narrowed_to=list(tests),
        kernel_build=record.kernel_build,
        git=record.git,
    )


async def _until_done(tasks: Sequence[asyncio.Task[RunRecord]], parts: Sequence[_Shard]) -> None:
    """Wait for every shard; the first one that ends `error` cancels the rest."""
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        broken = [p for p in parts if p.record.outcome is Outcome.ERROR]
        if broken and pending:
            log.warning(
                "%s broke (%s): cancelling the other shards", broken[0].record.id, broken[0].record.reason
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            return


async def _run_shard(
    run_shard: ShardRun,
    part: _Shard,
    config: Config,
    kernel: KernelImage,
    run_dir: Path,
    launcher: Launcher,
    verdicts: AccelVerdicts,
    hooks: ShardHooks,
) -> RunRecord:
    """One shard's run in its own directory; its results moved to `results/<k>/` however it ends."""
    try:
        return await run_shard(
            config,
            kernel,
            part.tests,
            part.record,
            part.directory,
            launcher,
            verdicts,
            hooks.of_shard(part.index),
            store=None,
            resume_limit=config.suite.resume_limit,
        )
    except NixvmdError as exc:  # the shard could not start: its config cannot take its tests
        part.record.outcome, part.record.reason = Outcome.ERROR, str(exc)
        return part.record
    finally:
        _keep(part, run_dir)
        hooks.on_end(part.index, part.record)


def _keep(part: _Shard, run_dir: Path) -> None:
    """Move the shard's suite results to `results/<k>/` and keep its own record as shard.json."""
    results = part.directory / RESULTS
    try:
        if results.is_dir():
            make_dirs(run_dir / RESULTS, "creating the run's results directory")
            os.replace(results, run_dir / RESULTS / str(part.index))
        text = json.dumps(part.record.to_json(), indent=2) + "\n"
        write_atomic(part.directory / "shard.json", text, "writing a shard's record")
    except (NixvmdError, OSError) as exc:
        log.warning("cannot keep the results of %s: %s", part.record.id, exc)


def _end(
    record: RunRecord, parts: Sequence[_Shard], store: RunStore | None, *, cancelled: bool = False
) -> RunRecord:
    """Merge the shards into `record`, write it, return it."""
    if parts:
        merge_shards(record, [p.record for p in parts], cancelled=cancelled)
    elif cancelled:
        record.outcome, record.reason = Outcome.CANCELLED, record.reason or "cancelled"
    record.finished_at = time.time()
    if store is not None:
        try:
            store.save(record)
        except NixvmdError as exc:
            if record.outcome is not Outcome.CANCELLED:
                record.outcome, record.reason = Outcome.ERROR, str(exc)
            log.warning("run %s: %s", record.id, exc)
    return record
