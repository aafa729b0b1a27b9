"""KTAP and TAP output (KUnit, kselftest): a streaming parser from console lines to TestResults.

Follows Documentation/dev-tools/ktap.rst (each line's grammar: ktap_lines.py) and what kernels really
print:

- a version line starts a document (at top level) or a nested test (indented).
- nesting follows indentation, whatever its width (the spec's 2 spaces, KUnit's 4). KUnit names a nested
  test with ``# Subtest: name``, before or after its version line; a nested test without one takes the
  name of its result line. A result less indented than the open nested test closes it. A version line back
  at the document's own indentation starts a new document (KUnit prints one per module loaded later), not
  an unindented subtest.
- printk timestamps give durations: from the line a test started after (the last header line of its level:
  version, ``# Subtest:``, plan; or the previous result there) to its result line; none when either line
  has no time (a header without one leaves the header before). The timestamps are then stripped; other
  lines (kernel messages) are ignored, except indented lines inside a nested test, which KUnit uses to
  continue a diagnostic (``Expected 1 == 2, but``).

Names join the nesting with '.', as KUnit does: ``suite.case``, ``suite.param_case.param description``; a
result without a description is named ``#<number>``. Leaf tests are reported; a test with subtests is
reported itself only when it has none, or when it failed although no subtest did. A plan of N with fewer
results reports each missing subtest as an error of its own, ``suite.#k`` (``#k`` at top level), so the
totals per suite agree with the kernel's tools/testing/kunit/kunit.py, which counts each missing one as
crashed.

Verdicts and the line grammar are ktap_lines.py's. The message of a failure is its headline
(results/record.py; the rule is in ktap_headline.py: KUnit's failed expectation, condensed, else the
reason or last diagnostic), then the diagnostic lines printed in the test just before its result and the
directive's reason.

If the output stops inside a nested test (the kernel crashed or hung), or a new top-level document starts
before the current one finished (the kernel rebooted), the innermost unfinished test is reported as an
error saying so, and every planned test after it as an error that did not run. KUnit's ``# Totals: pass:N
fail:N skip:N total:N`` lines are kept in `totals`.

A test with subtests is named twice (``# Subtest: name`` and its result line): when the two differ by one
garbled character (results/suspect.py), the ``# Subtest:`` name stays, the other spelling goes to `suspects`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import astuple, dataclass

from nixvmd.results.record import SuspectName, TestResult, TestStatus
from nixvmd.results.suspect import console_slip
from nixvmd.suite.ktap_headline import MAX_DIAG_LINES, KunitAssertion, failure_message
from nixvmd.suite.ktap_lines import PLAN, RESULT, SUBTEST, TOTALS, VERSION, KtapTotals, result_of, totals_of
from nixvmd.suite.splats import strip_printk

MAX_DEPTH = 16
"""Deeper nesting is treated as garbage; KUnit uses three levels."""
MAX_DIAG_CHARS = 300

_FAILING = (TestStatus.FAIL, TestStatus.ERROR)
_OUTPUT_ENDED = "the output ended (kernel crash, hang or timeout?)"
_DOCUMENT_RESTARTED = "a new KTAP document started first (kernel reboot?)"


@dataclass(frozen=True)
class KtapRun:
    """What a whole KTAP log said: its tests, its ``# Totals`` lines, whether it ended properly."""

    tests: tuple[TestResult, ...]
    totals: tuple[KtapTotals, ...]
    complete: bool
    started: bool  # a (K)TAP version line was seen at all
    suspects: tuple[SuspectName, ...] = ()

    def count(self, status: TestStatus) -> int:
        """How many tests have `status`."""
        return sum(1 for t in self.tests if t.status is status)


_Held = tuple[str, TestStatus, float | None, str]
"""A result not yet reported: (name relative to its level, status, duration, message)."""


class _Level:
    """One open test with subtests (or the document itself, at the bottom of the stack)."""

    __slots__ = (
        "assertion", "count", "diag", "failed", "held", "indent", "last_ts", "more", "name", "number", "plan",
    )  # fmt: skip

    def __init__(self, indent: int, name: str | None, number: int, ts: float | None) -> None:
        self.indent = indent
        self.name = name
        self.number = number
        self.plan: int | None = None
        self.count = 0
        self.diag: deque[str] = deque(maxlen=MAX_DIAG_LINES)
        self.last_ts = ts
        self.failed = False
        self.held: list[_Held] = []
        self.assertion: KunitAssertion | None = None  # the first failed one of the running test
        self.more = 0  # failed expectations after it

    def header(self, ts: float | None) -> None:
        """A header line of this test: its first subtest starts after the last one."""
        if ts is not None and self.count == 0:
            self.last_ts = ts

    def forget_diagnostics(self) -> None:
        """A result was reported: what was printed before it belonged to that test."""
        self.diag.clear()
        self.assertion, self.more = None, 0

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"#{self.number}"


class KtapParser:
    """Streaming KTAP parser: `feed` one console line at a time, then `finish`.
    `feed` returns the tests that line finished, for live progress. Memory holds the results, the ``Totals``
    lines and a bounded amount per open nesting level; it does not grow with the number of lines. Never raises
    on malformed input.
    """

    def __init__(self) -> None:
        self.results: list[TestResult] = []
        self.totals: list[KtapTotals] = []
        self.suspects: list[SuspectName] = []
        self._stack: list[_Level] = []
        self._new: list[TestResult] = []
        self._header_pending = False
        self._incomplete = False
        self._started = False
        self._run: KtapRun | None = None
        self._assertion: KunitAssertion | None = None  # a KUnit report whose lines may go on

    @property
    def current(self) -> str | None:
        """The name of the innermost test with subtests still running, or None."""
        if len(self._stack) < 2:
            return None
        return ".".join(level.label for level in self._stack[1:])

    def feed(self, line: str) -> tuple[TestResult, ...]:
        """Parse one line; return the tests it finished."""
        if self._run is not None:
            return ()
        ts, message = strip_printk(line)
        unindented = message.lstrip(" \t")
        body = unindented.rstrip()
        if not body:
            if self._assertion is not None:
                self._assertion.blank()
            return ()
        indent = len(message) - len(unindented)
        if "\t" in message[:indent]:
            indent = len(message[:indent].expandtabs(8))
        first = body[0]
        if first in "KT" and VERSION.match(body):
            self._end_assertion()
            self._on_version(indent, ts)
        elif first == "#":
            self._end_assertion()
            self._on_hash(indent, ts, body)
        elif first == "1" and (plan := PLAN.match(body)) is not None:
            self._end_assertion()
            self._on_plan(indent, ts, int(plan.group(1)))
        elif first in "on" and (result := RESULT.match(body)) is not None:
            self._end_assertion()
            self._on_result(indent, ts, result)
        else:
            report = self._assertion
            # A KUnit report's message (at the margin) joins the diagnostics when the report ends.
            if report is None or not report.take(indent, body) or indent >= report.indent:
                self._on_other(indent, message.rstrip())
        if not self._new:
            return ()
        new = tuple(self._new)
        self._new.clear()
        return new

    def finish(self) -> KtapRun:
        """End of output: report unfinished tests as errors and return the whole run."""
        if self._run is None:
            if self._stack:
                self._abandon(0, _OUTPUT_ENDED)
            self._new.clear()
            self._run = KtapRun(
                tests=tuple(self.results),
                totals=tuple(self.totals),
                suspects=tuple(self.suspects),
                complete=bool(self.results) and not self._incomplete,
                started=self._started,
            )
        return self._run

    def _on_version(self, indent: int, ts: float | None) -> None:
        self._started = True
        stack = self._stack
        if stack and self._header_pending and stack[-1].indent == indent:
            self._header_pending = False
            stack[-1].header(ts)
            return
        self._header_pending = False
        if stack and indent > stack[-1].indent:
            self._open(indent, None, ts)
            return
        keep = len(stack)
        while keep > 1 and stack[keep - 1].indent >= indent:
            keep -= 1
        if (keep == 1 and stack[0].indent == indent) or keep == 0 or indent < stack[0].indent:
            if stack:
                self._abandon(0, _DOCUMENT_RESTARTED)
            self._stack = [_Level(indent, None, 0, ts)]
        else:
            self._abandon(keep, _DOCUMENT_RESTARTED)
            self._open(indent, None, ts)

    def _on_hash(self, indent: int, ts: float | None, body: str) -> None:
        if (totals := TOTALS.match(body)) is not None:
            if (counted := totals_of(totals)) is not None:
                self.totals.append(counted)
            return
        stack = self._stack
        if stack and (subtest := SUBTEST.match(body)) is not None:
            inner = stack[-1]
            name = subtest.group(1).strip()
            if len(stack) > 1 and inner.indent == indent and inner.name is None and not inner.count:
                inner.name = name
                inner.header(ts)
                return
            if indent > inner.indent:
                if self._open(indent, name, ts):
                    self._header_pending = True
                return
        text = body[1:].strip()
        self._note(indent, text)
        if stack and (assertion := KunitAssertion.start(text, indent)) is not None:
            level = self._level_for(indent)
            if level.assertion is None:
                level.assertion = assertion
            else:
                level.more += 1
            self._assertion = assertion

    def _on_plan(self, indent: int, ts: float | None, count: int) -> None:
        if not self._stack:
            return
        inner = self._stack[-1]
        if indent > inner.indent:
            if not self._open(indent, None, ts):
                return
            inner = self._stack[-1]
        if inner.indent == indent and inner.plan is None:
            inner.plan = count
            inner.header(ts)

    def _on_other(self, indent: int, message: str) -> None:
        # Indented lines inside a nested test continue its diagnostics; at top level they could be anything.
        if len(self._stack) > 1 and indent >= self._stack[1].indent:
            self._note(indent, message[self._level_for(indent).indent :])

    def _on_result(self, indent: int, ts: float | None, match: re.Match[str]) -> None:
        stack = self._stack
        if not stack:
            return
        self._header_pending = False
        closes = None
        if stack[-1].indent > indent:  # indentation grows along the stack
            closes = next((j for j in range(1, len(stack)) if stack[j].indent > indent), None)
        elif indent > stack[-1].indent and not self._open(indent, None, ts):
            return
        number, description, status, text = astuple(result_of(match))
        if closes is not None:
            if closes + 1 < len(stack):
                self._abandon(closes + 1, "its parent reported a result first")
            self._close(closes, ts, status, text, description)
            return
        level = stack[-1]
        level.count += 1
        name = description or f"#{number if number is not None else level.count}"
        message = failure_message(status, text, list(level.diag), level.assertion, level.more, description)
        level.forget_diagnostics()
        duration = _elapsed(level.last_ts, ts)
        level.last_ts = ts
        self._deliver(len(stack) - 1, (name, status, duration, message))

    def _close(self, index: int, ts: float | None, status: TestStatus, text: str, description: str) -> None:
        """A nested test's own result arrived: pop it and report what it should."""
        level = self._stack[index]
        del self._stack[index:]
        parent = self._stack[-1]
        name = level.name or description or f"#{level.number}"
        if level.name and description and description != level.name:
            slip = console_slip(description, level.name) or console_slip(level.name, description)
            if slip is not None:
                note = f"its result line says {description!r} ({slip}); kept its '# Subtest:' name"
                self.suspects.append(SuspectName(description, level.name, note))
        parent.count += 1
        duration = _elapsed(level.last_ts if level.count == 0 else None, ts)
        parent.last_ts = ts
        for held_name, held_status, held_duration, held_message in level.held:
            self._deliver(index - 1, (f"{name}.{held_name}", held_status, held_duration, held_message), name)
        missing = range(level.count + 1, (level.plan or 0) + 1)
        for number in missing:
            message = f"never reported: {name} planned {level.plan} subtests and reported {level.count}"
            self._deliver(index - 1, (f"{name}.#{number}", TestStatus.ERROR, None, message), name)
        if not missing and (level.count == 0 or (status in _FAILING and not level.failed)):
            diag = list(level.diag) + list(parent.diag)
            reports = level if level.assertion is not None else parent
            message = failure_message(status, text, diag, reports.assertion, reports.more, name)
            self._deliver(index - 1, (name, status, duration, message))
        parent.forget_diagnostics()

    def _abandon(self, index: int, reason: str) -> None:
        """Levels from `index` up ended without a result.
        Every test a plan announced and the output never reached is an error of its own, as kunit.py counts
        them; the innermost one was running. A level with no plan left to fill is reported itself, if it was
        the innermost.
        """
        stack = self._stack
        innermost = True
        while len(stack) > index:
            level = stack.pop()
            parent = len(stack) - 1
            for held_name, held_status, held_duration, held_message in level.held:
                held = (f"{level.label}.{held_name}", held_status, held_duration, held_message)
                self._deliver(parent, held, level.label)
            prefix, what = (f"{level.label}.", "subtests") if stack else ("", "tests")
            diag = "".join(f"\n{line}" for line in level.diag)
            missing = range(level.count + 1, (level.plan or 0) + 1)
            for number in missing:
                message = f"did not run: {reason}"
                if innermost and number == level.count + 1:
                    message = f"did not finish: {reason}; {level.count} of the {level.plan} {what} reported"
                    message += diag
                self._deliver(parent, (f"{prefix}#{number}", TestStatus.ERROR, None, message), prefix[:-1])
            if not missing and innermost and stack:
                planned = f" of the {level.plan}" if level.plan is not None else ""
                message = f"did not finish: {reason}; {level.count}{planned} subtests reported{diag}"
                self._deliver(parent, (level.label, TestStatus.ERROR, None, message))
            if missing or (innermost and stack):
                self._incomplete = True
            innermost = False
            if not stack:
                break
            stack[-1].count += 1

    def _deliver(self, index: int, held: _Held, outer: str = "") -> None:
        """Pass a result named relative to level `index` up to the nearest unnamed level or out.
        `outer` is the level whose name was put in front of the result's last (the caller's own prefix): the
        outermost one is the result's collection (a KUnit suite).
        """
        stack = self._stack
        name, status, duration, message = held
        if status in _FAILING:
            for level in stack[: index + 1]:
                level.failed = True
        for j in range(index, 0, -1):
            level = stack[j]
            if level.name is None:
                level.held.append((name, status, duration, message))
                return
            name, outer = f"{level.name}.{name}", level.name
        result = TestResult(name, status, duration, message, collection=outer)
        self.results.append(result)
        self._new.append(result)

    def _open(self, indent: int, name: str | None, ts: float | None) -> bool:
        if not self._stack or len(self._stack) >= MAX_DEPTH:
            return False
        self._stack.append(_Level(indent, name, self._stack[-1].count + 1, ts))
        return True

    def _level_for(self, indent: int) -> _Level:
        for level in reversed(self._stack):
            if level.indent <= indent:
                return level
        return self._stack[0]

    def _note(self, indent: int, text: str) -> None:
        if self._stack and text:
            self._level_for(indent).diag.append(text[:MAX_DIAG_CHARS])

    def _end_assertion(self) -> None:
        """A KTAP line: an open KUnit report is complete; its message joins the diagnostics."""
        if self._assertion is not None:
            if message := self._assertion.end():
                self._note(self._assertion.indent, message)
            self._assertion = None


def _elapsed(start: float | None, end: float | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return round(end - start, 6)


def parse_ktap(text: str) -> KtapRun:
    """Parse a whole KTAP log (e.g. a console.log) at once."""
    parser = KtapParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.finish()
