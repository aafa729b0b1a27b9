"""check's closing lines: what each section says it ran, skipped and failed, and its counts.

``Ran: generic/001 generic/002``, ``Not run: ...``, ``Failures: ...``, then ``Failed N of M
tests`` or ``Passed all N tests``. A test named there whose own line was never read (the
console lost it) still gets a result from them (`missing_from`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from nixvmd.results.record import TestStatus
from nixvmd.suite.xfstests.verdict import TEST_NAME, FstestsResult, Key

CLOSING = re.compile(r"Ran:|Not run:|Failures:|Interrupted!|Passed all \d+ tests|Failed \d+ of \d+ tests")
"""The start of a closing line (check also prints them straight after a test's own text)."""


@dataclass(frozen=True)
class CheckSummary:
    """The closing lines of one section: the tests check ran, skipped and failed, and its counts."""

    section: str | None
    ran: tuple[str, ...] = ()
    not_run: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    failed: int | None = None
    total: int | None = None

    def reading(self, text: str) -> CheckSummary:
        """This summary with the closing line `text` read into it."""
        names = tuple(text.split(":", 1)[1].split()) if ":" in text else ()
        if text.startswith("Ran:"):
            return replace(self, ran=names)
        if text.startswith("Not run:"):
            return replace(self, not_run=names)
        if text.startswith("Failures:"):
            return replace(self, failures=names)
        if (counts := re.match(r"Failed (\d+) of (\d+)", text)) is not None:
            return replace(self, failed=int(counts.group(1)), total=int(counts.group(2)))
        if (counts := re.match(r"Passed all (\d+)", text)) is not None:
            return replace(self, failed=0, total=int(counts.group(1)))
        return self


def missing_from(summaries: Iterable[CheckSummary], seen: set[Key]) -> list[FstestsResult]:
    """Tests named in a section's summary but not in `seen` (whose own line was never read)."""
    found = []
    seen = set(seen)
    for summary in summaries:
        failed = "listed under Failures: in check's summary"
        skipped = "listed under Not run: in check's summary"
        for name, status, why in (
            *((n, TestStatus.FAIL, failed) for n in summary.failures),
            *((n, TestStatus.SKIP, skipped) for n in summary.not_run),
            *((n, TestStatus.PASS, "") for n in summary.ran if n not in summary.failures),
        ):
            if (summary.section, name) not in seen and TEST_NAME.fullmatch(name):
                seen.add((summary.section, name))
                found.append(FstestsResult(name, summary.section, status, message=why))
    return found
