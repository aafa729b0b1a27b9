"""A finished run against the ones before it: regressions, fixes, flaky reruns, known failures."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError, NixvmdError
from nixvmd.results.baseline import Baseline
from nixvmd.results.compare import annotate, classify_reruns
from nixvmd.results.record import Outcome, RunRecord, SuspectName, TestResult
from nixvmd.results.store import RunStore
from nixvmd.results.suspect import reconcile_names
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.registry import make_suite, with_tests
from nixvmd.suite.schedule import RECENT_FIX_RUNS, early_tests
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger("nixvmd")


def load_baseline(config: Config) -> Baseline | None:
    """The configured known-failures file; a broken one is reported and ignored."""
    path = config.baseline_path
    if not path.exists():
        return None
    try:
        return Baseline.load(path)
    except NixvmdError as exc:
        log.error("baseline ignored: %s", exc)
        return None


def compare_with_history(
    record: RunRecord, store: RunStore, config: Config, flaky: Collection[str] = ()
) -> None:
    """Fill and save `record`'s regressions, fixes, known failures, new skips and flaky tests.

    Only the kernel's verdicts are compared: a run that nixvmd could not carry out (`error`)
    or that was cancelled says nothing about the kernel, so it gets no regressions or fixes.
    A run whose only failures are known ones passed (see `pass_with_known_failures`).
    """
    if not record.is_verdict():
        record.clear_comparison()
        return
    previous = store.latest(record.suite, before=record.id, finished_only=True)
    earlier = earlier_results(store, record)
    if previous is not None:
        reported = {s.seen for s in previous.suspect_lines}
        record.tests, renamed = reconcile_names(record.tests, earlier or [], reported)
        record.suspect_lines.extend(renamed)
        for suspect in renamed:
            log.warning("run %s: suspect console line: test %r read as %r (%s)", *_suspect(record, suspect))
    annotate(record, earlier, load_baseline(config), flaky)
    pass_with_known_failures(record)
    store.save(record)
    if record.regressions:
        log.warning(
            "run %s: %d regression(s): %s",
            record.id,
            len(record.regressions),
            ", ".join(record.regressions),
        )


def earlier_results(store: RunStore, record: RunRecord) -> list[TestResult] | None:
    """Each test's results in the newest earlier verdict of `record`'s suite that ran it.

    A narrowed run (`nixvmctl run --tests`) speaks only for the tests it ran: for the others
    the runs before it are asked, back to the first run that was not narrowed (however many
    narrowed runs a day on one test made), so a failure that was failing all along is not
    news because narrowed runs came in between. None when there is no earlier verdict at all.
    """
    results: list[TestResult] = []
    named: set[str] = set()
    found = False
    for earlier in store.newest_first(record.suite, before=record.id, finished_only=True):
        found = True
        fresh = [t for t in earlier.tests if t.name not in named]
        results += fresh
        named.update(t.name for t in fresh)
        if not earlier.narrowed_to:
            break
    return results if found else None


def recent_runs(store: RunStore, record: RunRecord, most: int) -> list[RunRecord]:
    """The last `most` runs of `record`'s suite before it that have a verdict, newest first."""
    return list(
        itertools.islice(store.newest_first(record.suite, before=record.id, finished_only=True), most)
    )


def early_for(store: RunStore, record: RunRecord, previous: Sequence[TestResult] | None) -> list[str]:
    """The tests `record`'s run should start with: the failures of `previous` (its
    `earlier_results`), then the fixes of the last RECENT_FIX_RUNS runs (suite.schedule)."""
    return early_tests(previous, recent_runs(store, record, RECENT_FIX_RUNS))


def _suspect(record: RunRecord, suspect: SuspectName) -> tuple[str, str, str, str]:
    return record.id, suspect.kept, suspect.seen, suspect.note


def pass_with_known_failures(record: RunRecord) -> None:
    """Turn a `failed` run whose every failing test is a known failure into `passed`.

    The baseline says those tests fail on this kernel: failing again is the kernel doing
    what is expected of it, not news. The run keeps them in `known_failures` (and its
    exit status), so they stay visible in status and results without a notification.
    """
    if record.outcome is not Outcome.FAILED:
        return
    failing = {t.name for t in record.tests if t.status.failing}
    if not failing or not failing <= set(record.known_failures):
        return
    record.outcome = Outcome.PASSED
    count = len(record.known_failures)
    record.reason = f"{count} known failure{'' if count == 1 else 's'}, as the baseline expects"
    if record.splats:
        record.reason += f"; the kernel logged {len(record.splats)} splat(s)"


def failures_to_rerun(record: RunRecord) -> list[str]:
    """The failures worth running again to tell flaky from broken (known failures are not)."""
    if record.outcome is not Outcome.FAILED:
        return []
    known = set(record.known_failures)
    return [t.name for t in record.tests if t.status.failing and t.name not in known]


RerunExecutor = Callable[[Config, SuiteRun, RunRecord, Path], Awaitable[None]]


async def rerun_failures(
    record: RunRecord, kernel: KernelImage, config: Config, store: RunStore, execute: RerunExecutor
) -> None:
    """Run `record`'s new failures again, suite.rerun_failed times, each in a fresh VM.

    A failure that passes in any rerun is flaky: not a regression. The reruns are runs of
    their own (suite "<kind>-rerun", so they are never compared with), listed in `reruns`.
    """
    failed = failures_to_rerun(record)
    if not failed or not config.suite.rerun_failed:
        return
    try:
        tests: tuple[str, ...] = tuple(failed)
        narrowed = with_tests(config, tests)
    except ConfigError:  # e.g. KUnit takes one glob: run the whole suite again
        tests, narrowed = (), config
    reruns: list[RunRecord] = []
    for attempt in range(1, config.suite.rerun_failed + 1):
        suite = make_suite(narrowed, tests)
        rerun_id, rerun_dir = store.new_run_dir()
        rerun = RunRecord(
            rerun_id,
            f"{suite.name}-rerun",
            str(kernel.path),
            kernel.release,
            str(config.image.backend),
            time.time(),
            kernel_build=record.kernel_build,
            git=record.git,  # the same kernel from the same tree: its commit is the run's
        )
        log.info(
            "run %s: %d failure(s) again (%d of %d) as run %s",
            record.id,
            len(failed),
            attempt,
            config.suite.rerun_failed,
            rerun_id,
        )
        await execute(narrowed, suite, rerun, rerun_dir)
        reruns.append(rerun)
    verdict = classify_reruns(failed, [r.tests for r in reruns])
    record.reruns = [r.id for r in reruns]
    compare_with_history(record, store, config, flaky=verdict.flaky)
    if verdict.flaky:
        log.info("run %s: flaky (passed when run again): %s", record.id, ", ".join(verdict.flaky))
