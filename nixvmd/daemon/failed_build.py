"""A failed image build is a run that could not start: its record, outcome `error`."""

from __future__ import annotations

import time

from nixvmd.config.schema import Config
from nixvmd.daemon.builds import BuildNames
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.store import RunStore
from nixvmd.suite.registry import suite_name
from nixvmd.watch.kernel_image import KernelImage


async def record_failed_build(
    store: RunStore, config: Config, kernel: KernelImage | None, error: str, builds: BuildNames
) -> RunRecord:
    """Save and return the `error` record of a build that failed with `error`, with the
    kernel tree's commit as `builds` read it for `kernel` (like a run's)."""
    git = await builds.git_state(kernel, config.kernel.tree)
    run_id, _ = store.new_run_dir()
    release = kernel.release if kernel is not None else ""
    path = str(kernel.path) if kernel is not None else ""
    record = RunRecord(run_id, suite_name(config), path, release, str(config.image.backend), time.time())
    record.git = git
    record.outcome = Outcome.ERROR
    record.reason = (
        f"the {config.image.backend} image build failed; the last good image stays in use:\n{error}"
    )
    record.finished_at = record.started_at
    store.save(record)
    return record
