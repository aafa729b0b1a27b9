"""The `kunit` and `kselftest` suites: (K)TAP read from the console and parsed into tests.

KUnit runs inside the kernel at boot, before init, so its guest job is empty: by the time
the agent is up, the results are on the console. kselftest runs a command in the guest
(e.g. run_kselftest.sh) whose TAP output goes to the console; only the lines printed
while it runs are parsed, so KUnit output of the same boot does not mix in.

A boot that went well but printed no KTAP at all (a kernel without KUnit, or with its
tests as modules nobody loaded) is not a pass: the run ends `error` (SuiteError).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from nixvmd.errors import SuiteError
from nixvmd.guest.protocol import MAGIC, GuestJob
from nixvmd.results.record import SuspectName, TestResult
from nixvmd.suite.base import JobWindow, Progress, SuiteRunBase
from nixvmd.suite.ktap import KtapParser
from nixvmd.suite.ktap_lines import KtapTotals

NO_KUNIT_RESULTS = "no KUnit results on the console (is CONFIG_KUNIT enabled and are tests built in?)"


class KtapSuite(SuiteRunBase):
    """Feeds console lines to a streaming KTAP parser; the tests come from it."""

    def __init__(
        self,
        name: str,
        command: str,
        *,
        whole_boot: bool,
        tests: tuple[str, ...] = (),
        when_silent: str = "",
    ) -> None:
        """`when_silent`: the SuiteError message for a complete run with no (K)TAP at all ("": none)."""
        self.name = name
        self._when_silent = when_silent
        env = (("NIXVMD_TESTS", " ".join(tests)),) if tests else ()
        self._job = GuestJob(kind=name, command=command, env=env)
        self._whole_boot = whole_boot
        self._window = JobWindow()
        self._parser = KtapParser()
        self._verdicts: list[TestResult] = []
        self.totals: tuple[KtapTotals, ...] = ()
        self.suspect_lines: Sequence[SuspectName] = ()

    def job(self) -> GuestJob:
        return self._job

    def guest_event(self, event: str, argument: str) -> None:
        self._window.guest_event(event)

    def console_line(self, line: str) -> None:
        if not (self._whole_boot or self._window.running) or MAGIC in line:
            return
        self._verdicts += self._parser.feed(line)

    def verdicts(self) -> Sequence[TestResult]:
        return self._verdicts

    def progress(self) -> Progress:
        return Progress(test=_named(self._parser.current), done=len(self._verdicts), total=None)

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        run = self._parser.finish()
        self.totals = run.totals
        self.suspect_lines = run.suspects
        if complete and not run.started and self._when_silent:
            raise SuiteError(self._when_silent)
        return list(run.tests)


def _named(current: str | None) -> str | None:
    """The running test as far as it has a name: KUnit prints a nested test's version line
    before its `# Subtest:` name, and its number alone (`example.#4`) names nothing."""
    parts = (current or "").split(".")
    while parts and re.fullmatch(r"#\d+", parts[-1]):
        parts.pop()
    return ".".join(parts) or None


def kunit_suite() -> KtapSuite:
    """KUnit: results printed by the kernel during boot; nothing to run in the guest."""
    return KtapSuite("kunit", "", whole_boot=True, when_silent=NO_KUNIT_RESULTS)


def kselftest_suite(command: str, tests: tuple[str, ...] = ()) -> KtapSuite:
    """kselftest: `command` prints (K)TAP on the console (run_kselftest.sh, -c collection).

    `tests` (nixvmctl run --tests) reach the command as $NIXVMD_TESTS, e.g. for
    `run_kselftest.sh $(for t in $NIXVMD_TESTS; do echo -t $t; done)`.
    """
    return KtapSuite("kselftest", command, whole_boot=False, tests=tests)
