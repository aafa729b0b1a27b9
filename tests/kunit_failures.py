"""A real KUnit console with failed expectations, and the run record nixvmd makes of it.

The console (tests/suite/data/kunit_6_1_failing_console.log) is a boot of the kunit-tiny
kernel (Debian's linux-source 6.1.192, tinyconfig + KUnit) with
lib/kunit/kunit-example-test.c changed as tests/suite/data/kunit_failing_example.patch
shows. Tests of every view of a failure (results, junit, status, notification) start here.
"""

from __future__ import annotations

from pathlib import Path

from nixvmd.results.record import Outcome, RunRecord
from nixvmd.suite.kunit import kunit_suite

CONSOLE = Path(__file__).parent / "suite" / "data" / "kunit_6_1_failing_console.log"
SIMPLE_TEST = "example.example_simple_test"
SIMPLE_HEADLINE = (
    "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29: Expected 1 + 1 == 3, but 1 + 1 == 2"
)
FAILED_TESTS = 4


def kunit_record(run_dir: Path, console: str | None = None, run_id: str = "20260101-000000-001") -> RunRecord:
    """The finished record of a kunit run whose console was `console` (default: CONSOLE)."""
    suite = kunit_suite()
    for line in (CONSOLE.read_text() if console is None else console).splitlines():
        suite.console_line(line)
    tests = suite.results(0, run_dir, True)
    record = RunRecord(run_id, "kunit", "/k", "6.1.192", "direct", 0.0, Outcome.FAILED, tests=tests)
    record.finished_at = 21.0
    return record
