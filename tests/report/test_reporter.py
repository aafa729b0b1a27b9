"""The report fan-out: every channel hears about a run, a failing one is logged, not fatal."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.report.reporter import FanOut, HookChannel
from nixvmd.results.record import Outcome, RunRecord


class BrokenChannel:
    """A channel whose every report fails, as a bug in a channel would."""

    name = "broken"

    def __init__(self) -> None:
        self.closed = False

    async def report(self, record: RunRecord, config: Config) -> None:
        raise RuntimeError("the channel broke")

    async def close(self) -> None:
        self.closed = True


def _record() -> RunRecord:
    record = RunRecord("20260101-000000-1", "command", "/k/bzImage", "6.1.0", "direct", time.time())
    record.outcome = Outcome.FAILED
    return record


def test_a_failing_channel_is_logged_and_the_hook_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = tmp_path / "hook.json"
    config = parse_config(f"[notify]\ncommand = 'cat > {seen}'\n", name="nixvmd.toml", base=tmp_path)
    broken = BrokenChannel()
    fan_out = FanOut([broken, HookChannel()])
    with caplog.at_level(logging.ERROR, logger="nixvmd"):
        asyncio.run(fan_out.report(_record(), config))
        asyncio.run(fan_out.close())
    assert json.loads(seen.read_text())["outcome"] == "failed"
    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the broken report of run 20260101-000000-1 failed" in logged.getMessage()
    assert logged.exc_info is not None
    assert broken.closed
