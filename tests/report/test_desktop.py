"""Desktop notifications: the text of a run, the trigger policy, and real delivery to dunst."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from nixvmd.errors import ConfigError
from nixvmd.report.desktop import BACK_ON, NO_BUS, NO_SERVER, DesktopNotifier, escape_markup
from nixvmd.report.hook import run_hook
from nixvmd.report.notification import (
    DEFAULT_TRIGGERS,
    EventKind,
    Notification,
    Urgency,
    describe_run,
    parse_triggers,
    run_events,
    triggered_events,
)
from tests.desktop import NotificationServer, SessionBus
from tests.kunit_failures import FAILED_TESTS, SIMPLE_HEADLINE, SIMPLE_TEST, kunit_record
from tests.processes import exits_within


def run(outcome: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "20240101-120000-ab12",
        "outcome": outcome,
        "kernel_version": "6.8.0-rc3",
        "passed": 10,
        "failed": 0,
        "skipped": 0,
        "regressions": [],
        "fixes": [],
        "reason": "",
    }
    record.update(fields)
    return record


REGRESSED = run("failed", failed=2, regressions=["generic/475", "xfs/013"])


def desktop_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "nixvmd.report.desktop" and r.levelno >= logging.INFO
    ]


class TestDescribeRun:
    def test_regressions_are_named_and_critical(self) -> None:
        note = describe_run(REGRESSED)
        assert note.summary == "6.8.0-rc3: 2 regressions — generic/475, xfs/013"
        assert note.urgency is Urgency.CRITICAL
        assert "Regressions: generic/475, xfs/013" in note.body
        assert "nixvmctl results 20240101-120000-ab12" in note.body

    def test_a_long_regression_list_is_cut_short_in_the_summary(self) -> None:
        names = [f"generic/{n:03}" for n in range(1, 8)]
        note = describe_run(run("failed", failed=7, regressions=names))
        assert note.summary.endswith("generic/001, generic/002, generic/003 and 4 more")
        assert ", ".join(names) in note.body

    def test_a_crash_says_why(self) -> None:
        note = describe_run(run("crashed", kernel_version="6.1.0-56-cloud-amd64", reason="kernel panic"))
        assert note.summary == "6.1.0-56-cloud-amd64: crashed (kernel panic)"
        assert note.urgency is Urgency.CRITICAL

    def test_a_pass_counts_tests_and_is_low(self) -> None:
        note = describe_run(run("passed", passed=12))
        assert note.summary == "6.8.0-rc3: passed (12 tests)"
        assert note.urgency is Urgency.LOW

    def test_fixes_are_named(self) -> None:
        note = describe_run(run("passed", fixes=["generic/001", "generic/002", "xfs/100"]))
        assert note.summary == "6.8.0-rc3: passed, 3 fixed — generic/001, generic/002, xfs/100"
        assert note.urgency is Urgency.LOW

    @pytest.mark.parametrize(
        ("outcome", "summary"),
        [
            ("failed", "6.8.0-rc3: 3 tests failed"),
            ("timeout", "6.8.0-rc3: timed out (no output for 300s)"),
            ("error", "nixvmd could not test 6.8.0-rc3 (no output for 300s)"),
        ],
    )
    def test_other_failures_are_normal(self, outcome: str, summary: str) -> None:
        note = describe_run(run(outcome, failed=3, reason="no output for 300s"))
        assert note.summary == summary
        assert note.urgency is Urgency.NORMAL

    def test_the_kernel_is_named_by_its_build(self) -> None:
        note = describe_run(run("failed", failed=1, build="6.8.0-rc3 #7 a1b2c3d-dirty"))
        assert note.summary == "6.8.0-rc3 #7 a1b2c3d-dirty: 1 test failed"
        note = describe_run(run("error", build="6.8.0-rc3 #7", reason="QEMU exited"))
        assert note.summary == "nixvmd could not test 6.8.0-rc3 #7 (QEMU exited)"

    def test_missing_fields_do_not_break_it(self) -> None:
        note = describe_run({"outcome": "error"})
        assert note.summary == "nixvmd could not test kernel"

    def test_the_body_names_the_first_failures_with_their_headlines(self, tmp_path: Path) -> None:
        note = describe_run(kunit_record(tmp_path).summary())

        lines = note.body.splitlines()
        assert lines[0] == f"48 passed, {FAILED_TESTS} failed, 2 skipped"
        assert f"{SIMPLE_TEST}: {SIMPLE_HEADLINE}" in lines
        assert f"and {FAILED_TESTS - 3} more" in lines
        assert note.summary == f"6.1.192: {FAILED_TESTS} tests failed"

    def test_failures_in_the_body_are_few_and_short(self) -> None:
        failures = [{"name": f"generic/{n:03}", "headline": "x" * 500} for n in range(5)]

        note = describe_run(run("failed", failed=40, failures=failures))

        named = [line for line in note.body.splitlines() if line.startswith("generic/")]
        assert [line.split(":")[0] for line in named] == ["generic/000", "generic/001", "generic/002"]
        assert all(len(line) <= 160 for line in named)
        assert "and 37 more" in note.body.splitlines()

    def test_an_error_run_names_no_regressions_even_if_its_record_has_some(self) -> None:
        note = describe_run(run("error", regressions=["generic/001"], reason="QEMU exited"))
        assert note.summary == "nixvmd could not test 6.8.0-rc3 (QEMU exited)"
        assert "Regressions" not in note.body
        assert note.urgency is Urgency.NORMAL


def test_markup_is_escaped() -> None:
    assert escape_markup("a < b & <b>c</b>") == "a &lt; b &amp; &lt;b&gt;c&lt;/b&gt;"


class TestTriggers:
    def test_default_is_everything_but_pass(self) -> None:
        assert EventKind.PASS not in DEFAULT_TRIGGERS
        assert DEFAULT_TRIGGERS | {EventKind.PASS} == set(EventKind)

    def test_events_of_runs(self) -> None:
        assert run_events(REGRESSED) == {EventKind.FAIL, EventKind.REGRESSION}
        assert run_events(run("passed", fixes=["a"])) == {EventKind.PASS, EventKind.FIXED}
        assert run_events(run("crashed")) == {EventKind.CRASH}
        assert run_events(run("error")) == {EventKind.BUILD_ERROR}
        assert run_events(run("cancelled", regressions=["a"])) == set()
        # The machinery's failure is never the kernel's: no regression, no fix.
        assert run_events(run("error", regressions=["a"], fixes=["b"])) == {EventKind.BUILD_ERROR}
        assert triggered_events(run("error", regressions=["a"]), parse_triggers(["regression"])) == set()

    def test_a_failure_triggers_and_a_pass_does_not_by_default(self) -> None:
        assert triggered_events(run("failed", failed=1)) == {EventKind.FAIL}
        assert triggered_events(run("passed")) == set()
        assert triggered_events(run("passed"), {EventKind.PASS}) == {EventKind.PASS}

    def test_known_failures_alone_trigger_nothing_by_default(self) -> None:
        known = run("passed", failed=1, known_failures=["generic/475"], reason="1 known failure")
        assert run_events(known) == {EventKind.PASS}
        assert triggered_events(known) == set()

    def test_only_regressions_wanted(self) -> None:
        on = parse_triggers(["regression"])
        assert triggered_events(run("failed", failed=1), on) == set()
        assert triggered_events(REGRESSED, on) == {EventKind.REGRESSION}

    def test_unknown_event_is_a_config_error_listing_the_valid_ones(self) -> None:
        with pytest.raises(ConfigError, match=r'unknown event "failure".*"build-error"'):
            parse_triggers(["fail", "failure"])


class TestDelivery:
    def test_notification_arrives_as_sent(self, notification_server: NotificationServer) -> None:
        notifier = DesktopNotifier(notification_server.bus.environ(), category="x-nixvmd.run")

        async def main() -> int | None:
            try:
                return await notifier.notify(describe_run(REGRESSED))
            finally:
                await notifier.close()

        notification_id = asyncio.run(main())
        seen = notification_server.next()
        assert seen["appname"] == "nixvmd"
        assert seen["summary"] == "6.8.0-rc3: 2 regressions — generic/475, xfs/013"
        assert seen["body"] == describe_run(REGRESSED).body
        assert seen["urgency"] == "CRITICAL"
        assert seen["category"] == "x-nixvmd.run"
        assert seen["id"] == str(notification_id)

    def test_next_notification_replaces_the_previous_one(
        self, notification_server: NotificationServer
    ) -> None:
        notifier = DesktopNotifier(notification_server.bus.environ())

        async def main() -> list[int | None]:
            try:
                return [
                    await notifier.notify(Notification("building", "", Urgency.LOW)),
                    await notifier.notify(Notification("failed", "", Urgency.NORMAL)),
                    await notifier.notify(Notification("other loop", "", Urgency.LOW), key="b"),
                ]
            finally:
                await notifier.close()

        first, second, other = asyncio.run(main())
        seen = [notification_server.next() for _ in range(3)]
        assert [n["summary"] for n in seen] == ["building", "failed", "other loop"]
        assert [n["urgency"] for n in seen] == ["LOW", "NORMAL", "LOW"]
        assert first is not None and first == second != other
        assert seen[0]["id"] == seen[1]["id"] == str(first)
        assert seen[2]["id"] == str(other)

    def test_body_is_verbatim_for_a_server_without_body_markup(
        self, notification_server: NotificationServer
    ) -> None:
        # dunst 1.9 does not list "body-markup" in GetCapabilities, so nothing is escaped.
        notifier = DesktopNotifier(notification_server.bus.environ())

        async def main() -> None:
            try:
                await notifier.notify(Notification("s", "a < b & c", Urgency.LOW))
            finally:
                await notifier.close()

        asyncio.run(main())
        assert notification_server.next()["body"] == "a < b & c"

    def test_a_passing_run_sends_nothing_and_a_failing_one_notifies(
        self, notification_server: NotificationServer
    ) -> None:
        notifier = DesktopNotifier(notification_server.bus.environ())

        async def main() -> tuple[int | None, int | None]:
            try:
                quiet = await notifier.report_run(run("passed", passed=12))
                loud = await notifier.report_run(run("failed", failed=3))
                return quiet, loud
            finally:
                await notifier.close()

        quiet, loud = asyncio.run(main())
        assert quiet is None and loud is not None
        # dunst got the failing run first: the passing one was never sent.
        assert notification_server.next()["summary"] == "6.8.0-rc3: 3 tests failed"


class TestNoDesktop:
    def test_no_bus_logs_one_line_and_stays_quiet(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        notifier = DesktopNotifier({})

        async def main() -> list[int | None]:
            return [await notifier.report_run(REGRESSED) for _ in range(3)]

        assert asyncio.run(main()) == [None, None, None]
        assert desktop_messages(caplog) == [NO_BUS]

    def test_unreachable_bus_is_no_bus(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        notifier = DesktopNotifier({"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/gone"})

        async def main() -> list[int | None]:
            return [await notifier.report_run(REGRESSED) for _ in range(2)]

        with caplog.at_level(logging.INFO):
            assert asyncio.run(main()) == [None, None]
        assert desktop_messages(caplog) == [NO_BUS]

    def test_bus_without_server_then_server_appears(
        self,
        session_bus: SessionBus,
        request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        notifier = DesktopNotifier(session_bus.environ())
        loop = asyncio.new_event_loop()
        try:
            first = loop.run_until_complete(notifier.report_run(REGRESSED))
            again = loop.run_until_complete(notifier.report_run(REGRESSED))
            server: NotificationServer = request.getfixturevalue("notification_server")
            later = loop.run_until_complete(notifier.report_run(REGRESSED))
            loop.run_until_complete(notifier.close())
        finally:
            loop.close()
        assert first is None and again is None and later is not None
        assert server.next()["summary"] == describe_run(REGRESSED).summary
        assert desktop_messages(caplog) == [NO_SERVER, BACK_ON]

    def test_bus_that_goes_away_is_one_line(
        self, notification_server: NotificationServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        notifier = DesktopNotifier(notification_server.bus.environ())
        bus = notification_server.bus.process
        loop = asyncio.new_event_loop()
        try:
            before = loop.run_until_complete(notifier.report_run(REGRESSED))
            bus.terminate()
            bus.wait(timeout=5)
            after = [loop.run_until_complete(notifier.report_run(REGRESSED)) for _ in range(2)]
            loop.run_until_complete(notifier.close())
        finally:
            loop.close()
        assert before is not None and after == [None, None]
        assert desktop_messages(caplog) == [NO_BUS]


class TestHook:
    def test_hook_reads_the_run_json_on_stdin(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        command = f'cat > {out}; echo "$NIXVMD_RUN_ID $NIXVMD_OUTCOME" >> {out}.env'
        assert asyncio.run(run_hook(command, REGRESSED)) == 0
        assert json.loads(out.read_text()) == REGRESSED
        assert Path(f"{out}.env").read_text() == "20240101-120000-ab12 failed\n"

    def test_failing_hook_is_logged_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            status = asyncio.run(run_hook(["/bin/sh", "-c", "echo broken; exit 3"], REGRESSED))
        assert status == 3
        assert "exited with status 3" in caplog.text and "broken" in caplog.text

    def test_missing_hook_is_logged_not_raised(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(run_hook([str(tmp_path / "absent")], REGRESSED)) is None
        assert "could not start" in caplog.text

    def test_hook_past_its_timeout_is_killed_with_its_children(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        pidfile = tmp_path / "child.pid"
        # The hook hangs on purpose: the subject is the timeout, not a way to wait.
        command = f"sleep 600 & echo $! > {pidfile}; wait"
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(run_hook(command, REGRESSED, timeout_s=1.0)) is None
        assert "killed it" in caplog.text
        assert exits_within(int(pidfile.read_text()), 5.0)
