"""The daemon's `dump` command answers as nixvmctl does without a daemon (results/dump_query.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from nixvmd.daemon.commands import handlers
from nixvmd.daemon.loop import Daemon
from nixvmd.results.dump_query import run_dumps
from nixvmd.results.queries import NoSuchRun
from nixvmd.results.record import Outcome, RunRecord, Vmcore
from nixvmd.results.store import RunStore
from tests.results.vmcore_files import elf_file


def test_the_daemons_dump_answer_is_the_state_dirs(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "state")
    run_id, run_dir = store.new_run_dir()
    (run_dir / "vmcore").write_bytes(elf_file(b"OSRELEASE=6.1.7\n"))
    vmcore = Vmcore(str(run_dir / "vmcore"), (run_dir / "vmcore").stat().st_size, "elf")
    store.save(RunRecord(run_id, "command", "/k", "6.1.7", "direct", 0.0, Outcome.CRASHED, vmcore=vmcore))
    config = SimpleNamespace(kernel=SimpleNamespace(tree=tmp_path / "linux"))
    dump = handlers(cast(Daemon, SimpleNamespace(store=store, config=config)))["dump"]

    async def ask(run: str) -> Any:
        return await dump({"cmd": "dump", "run_id": run})

    answer = asyncio.run(ask(run_id))

    assert answer == run_dumps(store, run_id, tmp_path / "linux")
    assert answer["dumps"][0]["release"] == "6.1.7" and answer["vmlinux"] is None
    with pytest.raises(NoSuchRun, match="no run 'nope'"):
        asyncio.run(ask("nope"))
