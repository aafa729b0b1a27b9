"""One fstests test's verdict, as check's output and result.xml both give it, and a mismatch's headline."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from nixvmd.results.record import MAX_HEADLINE, TestStatus, cut

DIFF_LINES_KEPT = 10
HEADLINE_CHANGES = 4
"""Changed lines of the first hunk that a mismatch's headline shows."""

TEST_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*/\d{3}[A-Za-z0-9-]*")
"""An fstests test's name: its directory and number (generic/001, xfs/104-v2)."""

RANK = {TestStatus.SKIP: 0, TestStatus.PASS: 1, TestStatus.FAIL: 2, TestStatus.ERROR: 3}
"""How bad a status is: a test reported twice keeps the worse one."""
FAILING = (TestStatus.FAIL, TestStatus.ERROR)

Key = tuple[str | None, str]
"""(section, test): what identifies a test across check output, result.xml and artefacts."""

_HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


@dataclass(frozen=True)
class FstestsResult:
    """One fstests test: its plain name (generic/001), section, verdict and what check said."""

    name: str
    section: str | None
    status: TestStatus
    duration_s: float | None = None
    previous_s: float | None = None
    message: str = ""
    artefacts: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return (self.section, self.name)


def mismatch_headline(diff: Iterable[str]) -> str | None:
    """The first change of a unified diff's first hunk as one line; None when it has no hunk.

    ``output mismatch at line 2: -Silence is golden +touch: cannot touch ...``: the line
    number is the expected output's (the .out file's), the changed lines keep their -/+.
    """
    lines = iter(diff)
    for line in lines:
        if (hunk := _HUNK.match(line)) is not None:
            break
    else:
        return None
    number, changes = int(hunk.group(1)), []
    for line in lines:
        if line.startswith(("-", "+")):
            changes.append(line)
        elif changes or not line.startswith(" "):
            break  # the first change ends at the next context line; `...`: check cut the diff
        else:
            number += 1
    if not changes:
        return None
    shown = " ".join(changes[:HEADLINE_CHANGES]) + (" …" if len(changes) > HEADLINE_CHANGES else "")
    return cut(f"output mismatch at line {number}: {shown}", MAX_HEADLINE)
