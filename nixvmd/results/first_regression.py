"""The first regression of a run, found while the run goes on.

Each test's verdict is judged as the console shows it, against the same previous results
and baseline the run's end is compared with, by the same rule (`compare.category_of`): the
first verdict that rule calls a regression is news the user should not wait hours for.
Only the first is announced at once; the run's end still lists them all. A failure that
later passes on rerun (`suite.rerun_failed`) is flaky at the end, but was announced: the
announcement says what was seen, the run's record what it came to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nixvmd.results.baseline import Baseline
from nixvmd.results.compare import category_of, worst_by_name
from nixvmd.results.record import TestResult


@dataclass(frozen=True)
class FirstRegression:
    """A run's first regression: which run, which test and why, on which kernel build."""

    run_id: str
    test: str
    headline: str
    build: str

    def to_json(self) -> dict[str, Any]:
        """The `regression` event's fields and status's `current.first_regression`."""
        return {"run_id": self.run_id, "test": self.test, "headline": self.headline, "build": self.build}


class RegressionWatch:
    """Judges a run's verdicts one by one and says which one is its first regression."""

    def __init__(
        self, previous: Sequence[TestResult] | None, baseline: Baseline | None, kernel_version: str
    ) -> None:
        """`previous`: the earlier results (`history.earlier_results`; None: no earlier run)."""
        self._before = worst_by_name(previous or ())
        self._baseline = baseline or Baseline()
        self._kernel_version = kernel_version
        self.first: TestResult | None = None

    def see(self, result: TestResult) -> bool:
        """Whether `result` is the run's first regression (True once per run at most)."""
        if self.first is not None:
            return False
        was = self._before.get(result.name)
        if (
            category_of(result.name, result.status, was, self._baseline, self._kernel_version)
            != "regressions"
        ):
            return False
        self.first = result
        return True
