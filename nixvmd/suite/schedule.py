"""Regressions first: which tests of a run go first, and the order they give a test list.

A run is most useful when what is likely to break breaks early: the tests that failed in
the previous comparable run of the same suite (fail or error; a test that crashed the
guest or hung is recorded `error`), then the tests recently fixed — those the last
RECENT_FIX_RUNS runs with a verdict list in `fixes`, newest fix first — since a fix that
does not hold is a regression. Both are pure functions over results read elsewhere
(`results.history`); the suite kinds apply the order (`suite.registry.run_first`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from nixvmd.results.record import RunRecord, TestResult, TestStatus

RECENT_FIX_RUNS = 5
"""How many runs back (with a verdict, of the same suite) a fix counts as recent."""

_FAILING = (TestStatus.FAIL, TestStatus.ERROR)


def first(tests: Sequence[str], early: Collection[str]) -> list[str]:
    """`tests` with those in `early` first; each group keeps its order in `tests`."""
    return [t for t in tests if t in early] + [t for t in tests if t not in early]


def bare_name(name: str) -> str:
    """A recorded test name as a test list names it: ``section:generic/001`` is ``generic/001``."""
    return name.rsplit(":", 1)[-1]


def early_tests(previous: Sequence[TestResult] | None, recent: Iterable[RunRecord]) -> list[str]:
    """The tests to run first: `previous`'s failures, then the fixes of `recent` (newest first).

    `previous` are the previous comparable run's results (None: there is none); `recent`
    are the last runs with a verdict, newest first. Names are bare (no fstests section).
    """
    chosen = [bare_name(t.name) for t in previous or () if t.status in _FAILING]
    for record in recent:
        chosen += [bare_name(name) for name in record.fixes]
    return list(dict.fromkeys(chosen))
