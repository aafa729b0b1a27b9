"""The kunit and kselftest suites: which console lines they read, what tests they give."""

from __future__ import annotations

from pathlib import Path

from nixvmd.results.record import TestStatus
from nixvmd.suite.kunit import kselftest_suite, kunit_suite

BOOT_KTAP = [
    "[    0.5] KTAP version 1",
    "[    0.5] 1..1",
    "[    0.5]     KTAP version 1",
    "[    0.5]     # Subtest: example",
    "[    0.5]     1..2",
    "[    0.5]     ok 1 example_simple_test",
    "[    0.5]     not ok 2 example_fail",
    "[    0.5] # Totals: pass:1 fail:1 skip:0 total:2",
    "[    0.5] not ok 1 example",
]

SELFTEST_TAP = [
    "TAP version 13",
    "1..2",
    "ok 1 selftests: net: reuseport",
    "not ok 2 selftests: net: tls # exit=1",
]


def test_kunit_reads_the_boot_console_and_needs_no_guest_command(tmp_path: Path) -> None:
    suite = kunit_suite()
    assert suite.job().command == ""
    for line in BOOT_KTAP:
        suite.console_line(line)
    tests = suite.results(0, tmp_path, complete=True)
    assert {t.name: t.status for t in tests} == {
        "example.example_simple_test": TestStatus.PASS,
        "example.example_fail": TestStatus.FAIL,
    }
    assert suite.progress().done == 2
    assert [t.total for t in suite.totals] == [2]


def test_kselftest_reads_only_what_its_command_printed(tmp_path: Path) -> None:
    suite = kselftest_suite("./run_kselftest.sh -c net")
    assert suite.job().command == "./run_kselftest.sh -c net"
    for line in BOOT_KTAP:  # KUnit output of the same boot is not the command's
        suite.console_line(line)
    suite.guest_event("start", "kselftest")
    for line in SELFTEST_TAP:
        suite.console_line(line)
    suite.guest_event("exit", "1")
    suite.console_line("ok 3 printed after the command ended")
    tests = suite.results(1, tmp_path, complete=True)
    assert [(t.name, t.status) for t in tests] == [
        ("selftests: net: reuseport", TestStatus.PASS),
        ("selftests: net: tls", TestStatus.FAIL),
    ]


def test_kunit_output_cut_short_reports_the_unfinished_case_as_an_error(tmp_path: Path) -> None:
    suite = kunit_suite()
    for line in BOOT_KTAP[:6]:
        suite.console_line(line)
    tests = suite.results(None, tmp_path, complete=False)
    statuses = {t.name: t.status for t in tests}
    assert statuses["example.example_simple_test"] is TestStatus.PASS
    assert TestStatus.ERROR in statuses.values()
