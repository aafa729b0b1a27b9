"""The message of a failed KTAP test: a headline (KUnit's failed expectation, else the reason
it gave), then what the test printed (`failure_message`).

The rule (`failure_headline`): KUnit's first failed expectation or assertion, condensed to
one line ("(+N more)" when there were several); else a TIMEOUT or ERROR directive's reason;
else the last diagnostic line (without KUnit's ``case: `` prefix), with the text after
``#`` on the result line if any (kselftest's ``exit=1``).

What a 6.1 kernel prints for ``KUNIT_EXPECT_EQ(test, 1 + 1, 3)`` (lib/kunit/assert.c and
test.c: `kunit_fail` builds one string and prints it with one printk, so its lines arrive
together)::

        # example_simple_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29
        Expected 1 + 1 == 3, but
            1 + 1 == 2
        not ok 1 example_simple_test

The ``Expected`` line sits at the test's indentation, the values of non-literal operands
one level deeper. A ``_MSG`` variant adds an empty line and the user's message at the left
margin, where the KTAP parser would otherwise take it for an unrelated kernel message;
``KUNIT_FAIL`` prints its message right after the ``FAILED at`` line, also at the margin.
``ASSERTION FAILED`` has the same shape (the test stops there).

`KunitAssertion` collects one such report line by line; `headline` condenses it:
``EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29: Expected 1 + 1 == 3, but 1 + 1 == 2``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nixvmd.results.record import MAX_HEADLINE, TestStatus, cut

FAILED_AT = re.compile(r"(?:\S.*?: )?((?:EXPECTATION|ASSERTION) FAILED at \S+)\s*$")
"""A diagnostic (``#`` already removed) that starts a report: ``case: EXPECTATION FAILED at f:l``."""
MAX_DIAG_LINES = 12
"""Diagnostic lines kept per open test for the failure message."""
MAX_LINES = 8
"""Lines kept per report: the ``Expected`` line, values, the message."""


class KunitAssertion:
    """One failed expectation or assertion, from its ``FAILED at`` line to its message.

    `indent` is the indentation of the ``FAILED at`` line: the test's own level. The kernel
    prints a report with one printk, so nothing else can come between its lines; a line at
    the margin is still only taken for the report's message where one belongs (right after
    the ``FAILED at`` line, or after the empty line), and dropped again if ``Expected``
    lines follow it after all.
    """

    def __init__(self, where: str, indent: int) -> None:
        self.where = where
        self.indent = indent
        self.expected: list[str] = []
        self.values: list[str] = []
        self.message = ""
        self._message_next = True  # KUNIT_FAIL: the message follows the FAILED line at once

    @classmethod
    def start(cls, diagnostic: str, indent: int) -> KunitAssertion | None:
        """A report, when `diagnostic` is the ``FAILED at`` line of one; else None."""
        match = FAILED_AT.match(diagnostic)
        return cls(match.group(1), indent) if match is not None else None

    def blank(self) -> None:
        """An empty line: inside a report it announces the user's message (the _MSG variants)."""
        if not self.message:
            self._message_next = True

    def take(self, indent: int, text: str) -> bool:
        """Whether the console line `text` (at `indent`, not a KTAP line) is part of the report.

        ``Expected`` lines and the values below them are also the test's diagnostics; the
        caller notes them as it would any other. The message at the margin is only kept
        here; the caller adds it to the diagnostics when the report ends (`end`).
        """
        if len(self.expected) + len(self.values) >= MAX_LINES:
            return False
        if indent >= self.indent and text.startswith("Expected "):
            self.message = ""  # what came before it at the margin was not the report's
            self.expected.append(text)
            self._message_next = False
            return True
        if indent > self.indent and self.expected:
            self.values.append(text)
            return True
        if indent < self.indent and self._message_next and not self.message:
            self.message = text
            self._message_next = False
            return True
        return False

    def end(self) -> str:
        """A KTAP line came, so the report is over: its message, "" when it has none."""
        self._message_next = False
        return self.message

    def headline(self) -> str:
        """``<where>: <Expected ..., but> <values>: <message>``, the parts that were printed."""
        expected = " ".join(self.expected)
        if self.values:
            expected = f"{expected} {', '.join(self.values)}".strip()
        return ": ".join(part for part in (self.where, expected, self.message) if part)


def failure_message(
    status: TestStatus,
    reason: str,
    diagnostics: list[str],
    report: KunitAssertion | None,
    more: int,
    test: str,
) -> str:
    """A result's message: for a failure its headline, then what the test printed and the
    result's reason (the arguments as for failure_headline); else the reason alone."""
    if status not in (TestStatus.FAIL, TestStatus.ERROR):
        return reason
    lines = diagnostics[-MAX_DIAG_LINES:] + ([reason] if reason else [])
    headline = failure_headline(status, reason, diagnostics, report, more, test)
    return "\n".join([headline, *lines] if lines != [headline] else lines)


def failure_headline(
    status: TestStatus,
    reason: str,
    diagnostics: Sequence[str],
    report: KunitAssertion | None,
    more: int,
    test: str,
) -> str:
    """The headline of a failed test (see the module's docstring), cut to MAX_HEADLINE.

    `reason` is the result line's text after ``#``, `diagnostics` what the test printed
    before its result, `report` its first KUnit report and `more` how many followed it.
    """
    if report is not None:
        headline = report.headline() + (f" (+{more} more)" if more else "")
    elif status is TestStatus.ERROR and reason:
        headline = reason  # TIMEOUT or ERROR said why
    elif diagnostics:
        last = _strip_test_prefix(diagnostics[-1].strip(), test)
        headline = f"{last} ({reason})" if reason else last
    else:
        headline = reason
    return cut(headline, MAX_HEADLINE)


def _strip_test_prefix(diagnostic: str, test: str) -> str:
    """KUnit prefixes a test's diagnostics with its name (``case: text``); the text alone."""
    prefix = f"{test}: "
    return diagnostic[len(prefix) :] if test and diagnostic.startswith(prefix) else diagnostic
