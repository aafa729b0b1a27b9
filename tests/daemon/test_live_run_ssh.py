"""`current.ssh` as the run goes: a placeholder until QEMU is up, then each VM's own port and sshd news."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.daemon.live_run import LiveRun
from nixvmd.report.events import EventBus
from nixvmd.results.record import RunRecord


@dataclass
class DaemonSide:
    """What LiveRun's ssh news touches of the daemon: its config, `current` and the event bus."""

    config: Config
    events: EventBus = field(default_factory=EventBus)
    current: dict[str, Any] | None = None


def _live(tmp_path: Path, network: str, shards: int) -> tuple[LiveRun, DaemonSide]:
    config = parse_config(
        f'[kernel]\ntree = "{tmp_path}"\n[vm]\nnetwork = "{network}"\n', name="n.toml", base=tmp_path
    )
    daemon = DaemonSide(config)
    record = RunRecord("r1", "command", "/k", "6.1", "direct", time.time())
    lists = [("a",), ("b",)][:shards] if shards else []
    return LiveRun(cast(Any, daemon), record, lists), daemon


def test_each_shard_has_its_own_ssh_and_its_news_say_which(tmp_path: Path) -> None:
    async def go() -> None:
        live, daemon = _live(tmp_path, "user", 2)
        sub = daemon.events.subscribe(["ssh"])
        assert daemon.current is not None
        shards = daemon.current["shards"]
        assert [s["ssh"] for s in shards] == [{"port": None, "ready": False, "error": None}] * 2
        live.hooks(0).on_ssh({"port": 40022, "ready": False})
        live.hooks(1).on_ssh({"port": 40023, "ready": False})
        live.hooks(1).on_ssh({"ready": True, "error": None})
        assert shards[0]["ssh"] == {"port": 40022, "ready": False, "error": None}
        assert shards[1]["ssh"] == {"port": 40023, "ready": True, "error": None}
        news = [sub.queue.get_nowait() for _ in range(3)]
        assert [(n["shard"], n["port"], n["ready"]) for n in news] == [
            (0, 40022, False),
            (1, 40023, False),
            (1, 40023, True),
        ]

    asyncio.run(go())


def test_without_network_there_is_no_ssh_in_status(tmp_path: Path) -> None:
    _, daemon = _live(tmp_path, "none", 0)
    assert daemon.current is not None and "ssh" not in daemon.current
