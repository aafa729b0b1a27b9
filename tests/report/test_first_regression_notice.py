"""The notification at a run's first regression: its words, `notify.on`, the fan-out, delivery."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.report.desktop import DesktopNotifier
from nixvmd.report.notification import (
    DEFAULT_TRIGGERS,
    EventKind,
    Urgency,
    describe_first_regression,
    describe_run,
    parse_triggers,
    run_events,
)
from nixvmd.report.reporter import DesktopChannel, FanOut, HookChannel
from nixvmd.results.first_regression import FirstRegression
from nixvmd.results.record import RunRecord
from tests.desktop import NotificationServer

FOUND = FirstRegression(
    "20260101-000000-1", "generic/475", "output mismatch at line 3: -ok +EIO", "6.13.0-rc2 #7"
)


def test_the_text_names_test_kernel_and_that_the_run_goes_on() -> None:
    note = describe_first_regression(FOUND)
    assert note.summary == "first regression: generic/475 on 6.13.0-rc2 #7, run continues"
    assert note.body.splitlines()[0] == "generic/475: output mismatch at line 3: -ok +EIO"
    assert "nixvmctl watch (run 20260101-000000-1)" in note.body
    assert note.urgency is Urgency.CRITICAL


def test_it_is_on_by_default_and_no_finished_run_is_an_instance_of_it() -> None:
    assert EventKind.FIRST_REGRESSION in DEFAULT_TRIGGERS
    default = parse_config("", name="nixvmd.toml", base=Path("/"))
    assert EventKind.FIRST_REGRESSION in parse_triggers(default.notify.on)
    assert EventKind.FIRST_REGRESSION not in run_events({"outcome": "failed", "regressions": ["a"]})


class Recording:
    """A channel that hears regressions and keeps what it heard."""

    name = "recording"

    def __init__(self) -> None:
        self.heard: list[FirstRegression] = []

    async def report(self, record: RunRecord, config: Config) -> None:
        """Finished runs are not what this test is about."""

    async def first_regression(self, found: FirstRegression, config: Config) -> None:
        self.heard.append(found)

    async def close(self) -> None:
        """Nothing held."""


class Broken(Recording):
    name = "broken"

    async def first_regression(self, found: FirstRegression, config: Config) -> None:
        raise RuntimeError("the channel broke")


def test_the_fan_out_tells_the_channels_that_hear_regressions_and_logs_a_broken_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook_ran = tmp_path / "hook-ran"
    config = parse_config(f"[notify]\ncommand = 'touch {hook_ran}'\n", name="nixvmd.toml", base=tmp_path)
    recording = Recording()
    with caplog.at_level(logging.ERROR, logger="nixvmd"):
        asyncio.run(FanOut([Broken(), HookChannel(), recording]).first_regression(FOUND, config))
    assert recording.heard == [FOUND]
    assert not hook_ran.exists()  # the hook is given finished runs only
    assert "the broken report of run 20260101-000000-1's first regression failed" in caplog.text


def test_the_notice_is_shown_and_the_runs_end_replaces_it_unless_notify_on_leaves_it_out(
    notification_server: NotificationServer, tmp_path: Path
) -> None:
    notifier = DesktopNotifier(notification_server.bus.environ())
    channel = DesktopChannel(notifier)
    default = parse_config("", name="nixvmd.toml", base=tmp_path)
    without = parse_config('[notify]\non = ["regression", "fail"]\n', name="nixvmd.toml", base=tmp_path)
    end = {"id": FOUND.run_id, "outcome": "failed", "build": "6.13.0-rc2 #7", "failed": 2,
           "regressions": ["generic/475", "generic/476"]}  # fmt: skip

    async def main() -> None:
        try:
            await channel.first_regression(FOUND, without)  # off: nothing sent
            await channel.first_regression(FOUND, default)
            await notifier.report_run(end)
        finally:
            await channel.close()

    asyncio.run(main())
    notice, final = notification_server.next(), notification_server.next()
    assert notice["summary"] == "first regression: generic/475 on 6.13.0-rc2 #7, run continues"
    assert notice["urgency"] == "CRITICAL"
    assert (
        final["summary"]
        == describe_run(end).summary
        == "6.13.0-rc2 #7: 2 regressions — generic/475, generic/476"
    )
    assert final["id"] == notice["id"]
