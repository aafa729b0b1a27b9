"""The kunit and kselftest suites: which console lines they read, what tests they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.errors import SuiteError
from nixvmd.results.record import TestStatus
from nixvmd.suite.kunit import NO_KUNIT_RESULTS, kselftest_suite, kunit_suite

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


def test_a_complete_kunit_run_without_any_ktap_is_a_suite_error(tmp_path: Path) -> None:
    suite = kunit_suite()
    for line in ["[    0.0] Linux version 6.1.0-cloud-amd64", "[    1.0] Run /init as init process"]:
        suite.console_line(line)

    with pytest.raises(SuiteError) as raised:
        suite.results(0, tmp_path, complete=True)
    assert str(raised.value) == NO_KUNIT_RESULTS


def test_a_kunit_run_that_died_is_no_suite_error_with_or_without_ktap(tmp_path: Path) -> None:
    silent = kunit_suite()
    silent.console_line("[    0.1] Kernel panic - not syncing: VFS: Unable to mount root fs")
    assert silent.results(None, tmp_path, complete=False) == []

    cut = kunit_suite()
    for line in BOOT_KTAP[:6]:
        cut.console_line(line)
    assert cut.results(None, tmp_path, complete=False)[0].name == "example.example_simple_test"


def test_ktap_with_no_tests_and_a_silent_kselftest_are_not_suite_errors(tmp_path: Path) -> None:
    empty = kunit_suite()
    for line in ["[    0.5] KTAP version 1", "[    0.5] 1..0"]:
        empty.console_line(line)
    assert empty.results(0, tmp_path, complete=True) == []

    selftest = kselftest_suite("true")
    selftest.guest_event("start", "kselftest")
    selftest.guest_event("exit", "0")
    assert selftest.results(0, tmp_path, complete=True) == []
