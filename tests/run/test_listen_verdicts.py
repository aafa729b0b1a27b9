"""A run's owner hears each test's verdict as soon as the console shows it (RunHooks.on_verdict)."""

from __future__ import annotations

from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.results.record import TestResult, TestStatus
from nixvmd.run.listen import Listener, RunHooks
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.kunit import kunit_suite
from nixvmd.suite.xfstests import XfstestsSuite


def listening(suite: SuiteRun, tmp_path: Path) -> tuple[Listener, list[tuple[str, TestStatus]]]:
    heard: list[tuple[str, TestStatus]] = []

    def on_verdict(result: TestResult) -> None:
        heard.append((result.name, result.status))

    return Listener(suite, RunHooks(on_verdict=on_verdict), tmp_path), heard


def test_kunit_verdicts_are_heard_one_by_one_as_their_lines_arrive(tmp_path: Path) -> None:
    listener, heard = listening(kunit_suite(), tmp_path)
    for line in ["KTAP version 1", "1..2", "    KTAP version 1", "    # Subtest: example", "    1..2"]:
        listener.console(line)
    assert heard == []
    listener.console("    ok 1 example_simple_test")
    assert heard == [("example.example_simple_test", TestStatus.PASS)]
    listener.console("    not ok 2 example_failing_test")
    assert heard[-1] == ("example.example_failing_test", TestStatus.FAIL)
    listener.console("not ok 1 example")
    assert len(heard) == 2  # the suite's line closes it: no verdict of its own, nothing told twice


def test_an_fstests_failure_is_heard_when_the_next_test_starts_with_its_section(tmp_path: Path) -> None:
    config = parse_config(
        f'[daemon]\nstate_dir = "{tmp_path}"\n[suite]\nkind = "xfstests"\n[xfstests]\ndir = "{tmp_path}"\n'
        '[[xfstests.sections]]\nname = "a"\n[[xfstests.sections]]\nname = "b"\n',
        name="test.toml",
        base=tmp_path,
    )
    suite = XfstestsSuite(config.xfstests, tmp_path)
    listener, heard = listening(suite, tmp_path)
    nonce = suite.job().nonce
    listener.console(f"@@NIXVMD@@ {nonce} 1 start xfstests @@")
    for line in [
        "SECTION       -- a",
        "FSTYP         -- xfs (non-debug)",
        "",
        "[   12.5] run fstests generic/001 at 2026-01-01 00:00:00",
        "generic/001  1s",
        "[   13.5] run fstests generic/002 at 2026-01-01 00:00:01",
        "generic/002  - output mismatch (see /r/a/generic/002.out.bad)",
        "    --- tests/generic/002.out",
    ]:
        listener.console(line)
    # Diff lines may follow a failure: its verdict is whole when the next test starts.
    assert heard == [("a:generic/001", TestStatus.PASS)]
    listener.console("[   14.5] run fstests hang/001 at 2026-01-01 00:00:02")
    assert heard == [("a:generic/001", TestStatus.PASS), ("a:generic/002", TestStatus.FAIL)]
