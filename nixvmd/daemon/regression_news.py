"""A run's first regression, told while the run goes on: the event, status, log and channels.

`watch_verdicts` gives a run its `RunHooks.on_verdict`: each verdict is judged by a
`RegressionWatch` (the run's end's rule, the same earlier results and baseline), and the
first regression is published at once: a `regression` event, `current.first_regression`
in status, a warning in the log, and the channels that hear regressions (the desktop).
A run with shards gives every shard the same callback: still one first regression per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nixvmd.config.schema import Config
from nixvmd.results.first_regression import FirstRegression, RegressionWatch
from nixvmd.results.history import load_baseline
from nixvmd.results.record import RunRecord, TestResult

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")


def watch_verdicts(
    daemon: Daemon, record: RunRecord, config: Config, previous: Sequence[TestResult] | None
) -> Callable[[TestResult], None]:
    """The `on_verdict` of `record`'s run; `previous`: its earlier results (`earlier_results`)."""
    watch = RegressionWatch(previous, load_baseline(config), record.kernel_version)

    def on_verdict(result: TestResult) -> None:
        if watch.see(result):
            publish(daemon, record, result, config)

    return on_verdict


def publish(daemon: Daemon, record: RunRecord, result: TestResult, config: Config) -> None:
    """Tell of the run's first regression at once: event, status, log and the channels that take it."""
    found = FirstRegression(record.id, result.name, result.headline, record.build)
    if daemon.current is not None and daemon.current.get("run_id") == record.id:
        daemon.current["first_regression"] = found.to_json()
    daemon.events.publish("regression", **found.to_json())
    headline = f": {result.headline}" if result.headline else ""
    log.warning("run %s: first regression: %s%s; the run continues", record.id, result.name, headline)
    daemon.spawn(daemon.reporter.first_regression(found, config))
