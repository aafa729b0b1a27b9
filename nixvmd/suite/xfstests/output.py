"""fstests `check` output: a streaming parser from its lines (and the console's) to test verdicts.

`CheckOutputParser` reads what `check` prints (DESIGN.md §4) line by line:
headers (``FSTYP -- ...``, ``SECTION -- name``), one line per test
(``generic/001 3s ...  2s``, ``[not run] reason``, ``[expunged]``,
``[failed, exit status N]``, ``- output mismatch (see ...)`` and its diff,
``_check_dmesg: ...``), and the closing ``Ran:``/``Failures:``/``Failed N of M
tests`` lines. It also understands the console line ``run fstests generic/001
at <date>`` that check writes to /dev/kmsg, so console and check output may be
fed to the same parser, in the order they appeared: that is how it knows the
test running now, whose own line `check` only ends when the test does.

On a serial console the kernel writes whole lines, but it may do so in the middle
of one of check's lines (``generic/001 [ 12.3] run fstests generic/001 at ...``,
the rest of check's line following after the kernel's newline), even in the middle
of a word. So check's text before an embedded kernel message is kept and joined
with the next line of check's text, and a ``run fstests`` line that arrived
meanwhile takes effect after that line: the test it names is the running one at
once, but the tests before it finish only when their verdict is read whole. Check
text after a ``run fstests`` message (the kernel's line first) is check's too.

A failed test may be followed by diff, dmesg and fsck lines, so it is
reported when the next test (or the closing lines, or the next ``run fstests``
line) starts; passes and skips are reported at once. `finish` reports a test
that was still running as an error: the kernel crashed or hung, or check was
interrupted.

Messages: a failure's first line is its headline (results/record.py). For an output
mismatch that is the first change of the diff's first hunk, on one line (verdict.py's `mismatch_headline`:
``output mismatch at line 2: -Silence is golden +touch: ... No space left on device``);
otherwise check's own words: ``failed, exit status N``, ``_check_dmesg: ...``. The lines
after it are what check printed: the verdicts, the diff as far as check showed it.

Naming: in a run with several sections, tests are named ``section:generic/001``;
with one section (or none) just ``generic/001``. The section is kept in
`FstestsResult.section` either way; `results.to_test_results` names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from nixvmd.results.record import TestStatus
from nixvmd.suite.splats import EMBEDDED_PRINTK, MAX_LINE, strip_printk
from nixvmd.suite.xfstests.summary import CLOSING, CheckSummary, missing_from
from nixvmd.suite.xfstests.verdict import DIFF_LINES_KEPT, RANK, TEST_NAME, FstestsResult, mismatch_headline

MAX_EXTRA_LINES = 10

_TEST_LINE = re.compile(rf"({TEST_NAME.pattern})(?=\s|\[|$)(.*)$")
_HEADER = re.compile(r"(FSTYP|PLATFORM|MKFS_OPTIONS|MOUNT_OPTIONS|SECTION|RECREATING)\s+--\s?(.*)$")
_KMSG_RUN = re.compile(
    r"(?:\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? ?)?run fstests (\S+) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
)
_CLOCK = re.compile(r"\s*\[\d\d:\d\d:\d\d\]")
_PREVIOUS = re.compile(r"\s*(\d+)s \.\.\.")
_PASS_TIME = re.compile(r"(?:^|\s)(\d+)s\s*$")
_NOT_RUN = re.compile(r"\[not run\]\s*(.*)$")
_EXIT = re.compile(r"\[failed, exit status (-?\d+)\]")
_MISMATCH = re.compile(r"- output mismatch \(see (\S+)\)")
_CHECKER = re.compile(r"(_check_\w+): (.*?)\s*$")
_FAILURE_HINT = re.compile(r"\[|- |_check_|no such test")
_SEE = re.compile(r"\(see (\S+)(?: for details)?\)")
_NOTRUN_REASON = re.compile(r"\s+(\S+/\d{3}\S*) -- (.*)$")

_OUTPUT_ENDED = "did not finish: the output ended while it ran (kernel crash, hang or timeout?)"


@dataclass(frozen=True)
class CheckRun:
    """Everything one check output said. `complete` means every section reached its summary."""

    tests: tuple[FstestsResult, ...]
    summaries: tuple[CheckSummary, ...]
    headers: Mapping[str | None, Mapping[str, str]]
    complete: bool


@dataclass(slots=True)
class _Open:
    """The test whose line is being read: still running (status None) or collecting its failure."""

    name: str
    section: str | None
    status: TestStatus | None = None
    duration_s: float | None = None
    previous_s: float | None = None
    reason: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    artefacts: list[str] = field(default_factory=list)

    def fail(self, why: str, status: TestStatus = TestStatus.FAIL) -> None:
        if self.status is None or RANK[status] >= RANK[self.status]:
            self.status = status
        if why and len(self.reason) < MAX_EXTRA_LINES:
            self.reason.append(why[:MAX_LINE])

    def result(self) -> FstestsResult:
        status = self.status or TestStatus.ERROR
        lines = self.reason + self.diff
        if (headline := mismatch_headline(self.diff)) is not None:
            lines.insert(0, headline)
        return FstestsResult(
            self.name, self.section, status, self.duration_s, self.previous_s,
            "\n".join(lines), tuple(self.artefacts),
        )  # fmt: skip


class CheckOutputParser:
    """Streaming parser of fstests `check` output (and its console ``run fstests`` lines).

    `feed` returns the tests a line finished. `running` is the test running
    now, `done` how many have finished. Memory holds the results and the
    summary lists; it does not grow with the number of lines. Never raises.
    """

    def __init__(self) -> None:
        self.results: list[FstestsResult] = []
        self.section: str | None = None
        self.headers: dict[str | None, dict[str, str]] = {}
        self._summaries: dict[str | None, CheckSummary] = {}
        self._open: _Open | None = None
        self._running: str | None = None
        self._unfinished = False
        self._new: list[FstestsResult] = []
        self._run: CheckRun | None = None
        self._pending = ""  # check's text cut short by a kernel message; its line goes on later
        self._held: list[str] = []  # `run fstests` names seen while _pending waits: they come after it

    @property
    def running(self) -> str | None:
        """The test running now (plain name), or None."""
        if self._held:
            return self._held[-1]
        if self._pending and (start := _TEST_LINE.match(self._pending)) is not None:
            return start.group(1)
        if self._open is not None and self._open.status is None:
            return self._open.name
        return self._running

    @property
    def done(self) -> int:
        """How many tests have finished."""
        return len(self.results)

    def feed(self, line: str) -> tuple[FstestsResult, ...]:
        """Parse one line of check output or console; return the tests it finished."""
        if self._run is None:
            self._line(*strip_printk(line))
        if not self._new:
            return ()
        new = tuple(self._new)
        self._new.clear()
        return new

    def finish(self) -> CheckRun:
        """End of output: a test still running becomes an error; return the whole run."""
        if self._run is not None:
            return self._run
        if self._pending or self._held:
            self._check_text("")
        unfinished = _OUTPUT_ENDED
        if self._open is not None and self._open.status is None:
            self._open.status = TestStatus.ERROR
            self._open.reason.insert(0, unfinished)
            self._unfinished = True
        self._finalize()
        if self._running is not None:
            self._emit(FstestsResult(self._running, self.section, TestStatus.ERROR, None, None, unfinished))
            self._unfinished = True
        self.results += missing_from(self._summaries.values(), {t.key for t in self.results})
        complete = (
            not self._unfinished
            and bool(self._summaries)
            and all(s.total is not None for s in self._summaries.values())
        )
        self._new.clear()
        self._run = CheckRun(
            tuple(self.results),
            tuple(self._summaries.values()),
            {k: dict(v) for k, v in self.headers.items()},
            complete,
        )
        return self._run

    def _line(self, ts: float | None, text: str) -> None:
        """Tell check's text from kernel messages on one console line, in the order written."""
        marker = _KMSG_RUN.search(text) if "run fstests " in text else None
        if ts is not None:
            # A kernel message. Only the end of `run fstests ... at <date>` is known,
            # so only after that one can check's text be told apart on the same line.
            if marker is not None and marker.start() == 0:
                self._kernel_marker(marker.group(1))
                if rest := text[marker.end() :]:
                    self._line(None, rest)
            return
        if marker is not None:
            self._fragment(text[: marker.start()])
            self._kernel_marker(marker.group(1))
            if rest := text[marker.end() :]:
                self._line(None, rest)
        elif "[" in text and (glued := EMBEDDED_PRINTK.search(text)) is not None:
            self._fragment(text[: glued.start()])
        else:
            self._check_text(text)

    def _fragment(self, text: str) -> None:
        """Check's text that a kernel message interrupted: the rest of its line comes later."""
        self._pending = (self._pending + text)[:MAX_LINE]
        start = _TEST_LINE.match(self._pending)
        current = self._open
        # A new test's line has begun: the one before it is over.
        if start is not None and current is not None and (current.name, current.status) != (start[1], None):
            self._finalize()

    def _kernel_marker(self, name: str) -> None:
        if self._pending:
            self._held = [*self._held[-3:], name]
        else:
            self._on_run_marker(name)

    def _check_text(self, text: str) -> None:
        """A line of check's output ends here: read it whole, then the markers it held back."""
        text, self._pending = self._pending + text, ""
        held, self._held = self._held, []
        self._check_line(text)
        for name in held:
            self._on_run_marker(name)

    def _check_line(self, text: str) -> None:
        text = text.rstrip()
        if not text.strip():
            return
        if (header := _HEADER.match(text)) is not None:
            self._finalize()
            if header.group(1) == "SECTION":
                self.section = header.group(2).strip()
            else:
                self.headers.setdefault(self.section, {})[header.group(1)] = header.group(2)
        elif CLOSING.match(text):
            self._on_closing(text)
        elif (test := _TEST_LINE.match(text)) is not None:
            self._finalize()
            self._open = _Open(test.group(1), self.section)
            self._apply(test.group(2))
        elif self._open is not None:
            self._continue(self._open, text)
        elif self.results and _CHECKER.match(text):
            # Old check versions ran _check_dmesg after printing the runtime:
            # take the test back and report it again with its real verdict.
            last = self.results.pop()
            self._open = _Open(
                last.name, last.section, last.status, last.duration_s, last.previous_s,
                [last.message] if last.message else [], [], list(last.artefacts),
            )  # fmt: skip
            self._apply_failures(self._open, text)

    def _on_run_marker(self, name: str) -> None:
        current = self._open
        if current is not None and current.name == name:
            return  # its own line came first (a failure may still be collecting its diff)
        if self.results and self.results[-1].name == name and self._running is None:
            return  # the console line of a test already reported: fed late, not a rerun
        self._finalize()
        self._running = name

    def _on_closing(self, text: str) -> None:
        if self._open is not None and self._open.status is None:
            self._open.status = TestStatus.ERROR
            self._open.reason.insert(0, "did not finish: check was interrupted")
            self._unfinished = True
        self._finalize()
        self._running = None
        summary = self._summaries.get(self.section, CheckSummary(self.section))
        self._summaries[self.section] = summary.reading(text)

    def _apply(self, text: str) -> None:
        """Read verdict text (the rest of a test line, or a line continuing it)."""
        current = self._open
        assert current is not None
        closing = CLOSING.search(text)
        if closing is not None and closing.start() > 0:
            self._apply(text[: closing.start()])
            self._on_closing(text[closing.start() :])
            return
        if "[" in text:
            text = _CLOCK.sub("", text)
        if current.status is None and (previous := _PREVIOUS.match(text)) is not None:
            current.previous_s = float(previous.group(1))
            text = text[previous.end() :]
        if (not_run := _NOT_RUN.search(text)) is not None:
            current.status = TestStatus.SKIP
            reason = not_run.group(1).strip()[:MAX_LINE]
            current.reason = [reason] if reason else []
        elif "[expunged]" in text:
            current.status = TestStatus.SKIP
            current.reason = ["expunged"]
        else:
            if _FAILURE_HINT.search(text):
                self._apply_failures(current, text)
            if current.status is None and (passed := _PASS_TIME.search(text)) is not None:
                current.status = TestStatus.PASS
                current.duration_s = float(passed.group(1))
        skipped_with_reason = current.status is TestStatus.SKIP and bool(current.reason)
        if current.status is TestStatus.PASS or skipped_with_reason:
            self._finalize()

    @staticmethod
    def _apply_failures(current: _Open, text: str) -> None:
        if (exit_status := _EXIT.search(text)) is not None:
            current.fail(f"failed, exit status {exit_status.group(1)}")
        if "[dumped core]" in text:
            current.fail("dumped core")
        if (mismatch := _MISMATCH.search(text)) is not None:
            current.fail(f"output mismatch (see {mismatch.group(1)})")
            current.artefacts.append(mismatch.group(1))
        if (checker := _CHECKER.search(text)) is not None:
            current.fail(f"{checker.group(1)}: {checker.group(2)}")
            if (see := _SEE.search(checker.group(2))) is not None:
                current.artefacts.append(see.group(1))
        if "- no qualified output" in text:
            current.fail("no qualified output")
        if "no such test?" in text:
            current.fail("no such test", TestStatus.ERROR)

    def _continue(self, current: _Open, text: str) -> None:
        """A line after a test line that is neither a test, a header nor a closing line."""
        if current.status is None:
            self._apply(text)
            still_running = self._open is current and current.status is None
            if still_running and len(current.reason) < MAX_EXTRA_LINES:
                current.reason.append(text.strip()[:MAX_LINE])
        elif current.status is TestStatus.SKIP:
            reason = _NOTRUN_REASON.match(text)
            if reason is not None and reason.group(1) == current.name:
                current.reason = [reason.group(2).strip()[:MAX_LINE]]
                self._finalize()
        elif text.startswith("    "):
            diff = text[4:]
            if diff.startswith("(Run ") or len(current.diff) >= DIFF_LINES_KEPT:
                return
            current.diff.append(diff[:MAX_LINE])
        elif (see := _SEE.fullmatch(text.strip())) is not None:
            current.artefacts.append(see.group(1))
        elif _CHECKER.match(text):
            self._apply_failures(current, text)
        elif len(current.reason) < MAX_EXTRA_LINES:
            current.reason.append(text.strip()[:MAX_LINE])

    def _finalize(self) -> None:
        current, self._open = self._open, None
        if current is None:
            return
        if current.status is None:
            current.fail("no result printed before the next test started", TestStatus.ERROR)
        self._emit(current.result())

    def _emit(self, result: FstestsResult) -> None:
        if self._running == result.name:
            self._running = None
        self.results.append(result)
        self._new.append(result)


def parse_check_output(text: str) -> CheckRun:
    """Parse a whole check output (e.g. check.log or the console) at once."""
    parser = CheckOutputParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.finish()
