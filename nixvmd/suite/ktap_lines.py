"""KTAP's lines, one at a time: which kind a line is, and what a result line says about its test.

Follows Documentation/dev-tools/ktap.rst: version lines ``KTAP version 1`` /
``TAP version 13|14``, plans ``1..N``, results
``ok|not ok <n> [- ][<name>][ # <DIRECTIVE> [reason]]``, ``# Subtest: name`` (KUnit)
and KUnit's ``# Totals: pass:N fail:N skip:N total:N``.

Verdicts: ``ok`` pass, ``not ok`` fail; ``# SKIP`` skip (either result);
``# XFAIL`` pass, the failure was expected (kselftest prints ``ok ... # XFAIL``);
``# TODO`` with ``ok`` pass, with ``not ok`` skip, because TODO marks a test
known not to work yet, which is neither a pass nor news; ``# TIMEOUT`` and
``# ERROR`` error. Other text after ``#`` is only a message. The message of
a failure is its headline (results/record.py; the rule is in ktap_headline.py:
KUnit's failed expectation, condensed, else the reason or last diagnostic),
then the diagnostic lines printed in the test just before its result and the
directive's reason.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from nixvmd.results.record import TestStatus

VERSION = re.compile(r"K?TAP version \d+\s*$")
PLAN = re.compile(r"1\.\.(\d+)\s*(?:#.*)?$")
RESULT = re.compile(r"(not ok|ok)(?:\s+(\d+))?(?:\s+-(?=\s|$))?(\s.*)?$")
SUBTEST = re.compile(r"#\s*Subtest:(.*)$")
_DIRECTIVE = re.compile(r"(?:((?i:SKIP)(?i:PED)?)|(TODO|XFAIL|TIMEOUT|ERROR))\b:?\s*(.*)$")
TOTALS = re.compile(r"#\s*Totals:\s*(.*)$")
_COUNT = re.compile(r"(\w+):\s*(\d+)")


class Directive(enum.StrEnum):
    """The KTAP directives that change a result's meaning."""

    SKIP = "SKIP"
    TODO = "TODO"
    XFAIL = "XFAIL"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"


@dataclass(frozen=True)
class KtapTotals:
    """One ``# Totals:`` line: the framework's own count of its tests, as (key, number) pairs."""

    counts: tuple[tuple[str, int], ...]

    def get(self, key: str) -> int:
        """The number for `key` (``pass``, ``fail``, ``skip``, ``total``, ...), 0 if absent."""
        return sum(n for k, n in self.counts if k == key)

    @property
    def passed(self) -> int:
        return self.get("pass")

    @property
    def failed(self) -> int:
        return self.get("fail")

    @property
    def skipped(self) -> int:
        return self.get("skip")

    @property
    def total(self) -> int:
        return self.get("total")


@dataclass(frozen=True)
class ResultLine:
    """An ``ok``/``not ok`` line: its number, description, and the verdict with its message."""

    number: int | None
    description: str
    status: TestStatus
    text: str


def totals_of(match: re.Match[str]) -> KtapTotals | None:
    """The counts of a line matched by TOTALS (None when it counts nothing)."""
    counts = tuple((k, int(n)) for k, n in _COUNT.findall(match.group(1)))
    return KtapTotals(counts) if counts else None


def result_of(match: re.Match[str]) -> ResultLine:
    """What a line matched by RESULT says: ok/not ok, its number and name, directive and reason."""
    outcome, digits, rest = match.groups()
    text_before, hash_sign, text_after = (rest or "").partition("#")
    if hash_sign:
        directive, reason = _split_directive(text_after.strip())
        status, text = verdict(outcome == "ok", directive, reason)
    else:
        status, text = (TestStatus.PASS if outcome == "ok" else TestStatus.FAIL), ""
    return ResultLine(int(digits) if digits else None, text_before.strip(), status, text)


def verdict(ok: bool, directive: Directive | None, reason: str) -> tuple[TestStatus, str]:
    """The status and message of a result line, from ok/not ok, its directive and reason."""
    if directive is Directive.SKIP:
        return TestStatus.SKIP, reason
    if directive is Directive.XFAIL:
        return TestStatus.PASS, f"expected failure: {reason}" if reason else "expected failure"
    if directive is Directive.TODO:
        if ok:
            return TestStatus.PASS, reason
        return TestStatus.SKIP, f"TODO: {reason}" if reason else "TODO"
    if directive is Directive.TIMEOUT:
        return TestStatus.ERROR, f"timed out: {reason}" if reason else "timed out"
    if directive is Directive.ERROR:
        return TestStatus.ERROR, reason or "error"
    return (TestStatus.PASS if ok else TestStatus.FAIL), reason


def _split_directive(text: str) -> tuple[Directive | None, str]:
    if not text:
        return None, ""
    match = _DIRECTIVE.match(text)
    if match is None:
        return None, text
    word = (match.group(1) or match.group(2)).upper()
    return Directive(word[:4] if word.startswith("SKIP") else word), match.group(3).strip()
