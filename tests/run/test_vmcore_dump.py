"""The QMP side of a vmcore against a stand-in QEMU (a real process speaking QMP, no guest).

The stand-in keeps every command it gets in a file, answers the capability query with the
formats it is given, writes the dump where `file:` says and then sends DUMP_COMPLETED —
or fails the dump, or never finishes it — as its mode says.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.results.space import free_bytes
from nixvmd.results.store import LIVE_LOCK
from nixvmd.run.vmcore import HEADROOM, choose_format, take_vmcore
from nixvmd.vm.cmdline import Sockets
from nixvmd.vm.machine import Machine
from tests.conftest import Tmpfs
from tests.vm.stand_in_qemu import STAND_IN_QEMU

Mount = Callable[..., Tmpfs]


def _dump(
    tmp_path: Path,
    mode: str,
    formats: str,
    timeout: float = 30,
    run_dir: Path | None = None,
    memory: int = 1 << 20,
) -> tuple[object, str, list[dict[str, object]]]:
    log = tmp_path / "commands.jsonl"
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    argv = [sys.executable, "-c", STAND_IN_QEMU, str(sockets.qmp), str(log), mode, formats]
    run_dir = run_dir or tmp_path / "run"
    run_dir.mkdir(parents=True)

    async def scenario() -> tuple[object, str]:
        machine = Machine(
            argv, sockets=sockets, console_log=tmp_path / "console.log", on_console=print, on_agent=print
        )
        async with machine:
            await machine.start()
            result = await take_vmcore(machine, run_dir, memory, timeout, run_dir.parent)
            await machine.quit()
        return result

    vmcore, note = asyncio.run(scenario())
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    return vmcore, note, commands


def test_the_dump_is_asked_for_detached_unpaged_in_kdump_and_renamed_once_complete(tmp_path: Path) -> None:
    vmcore, note, commands = _dump(tmp_path, "ok", "elf,kdump-zlib,win-dmp")

    partial = tmp_path / "run" / ".vmcore.partial"
    assert [c["execute"] for c in commands[1:]] == [
        "query-dump-guest-memory-capability",
        "dump-guest-memory",
        "quit",
    ]
    assert commands[2]["arguments"] == {
        "paging": False,
        "protocol": f"file:{partial}",
        "detach": True,
        "format": "kdump-zlib",
    }
    target = tmp_path / "run" / "vmcore"
    assert note == ""
    assert vmcore is not None and vmcore.path == str(target)  # type: ignore[attr-defined]
    assert vmcore.size == target.stat().st_size == len(b"KDUMP   half a dump")  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["vmcore"]


def test_a_dump_qemu_fails_is_a_note_and_leaves_no_partial_file(tmp_path: Path) -> None:
    vmcore, note, _ = _dump(tmp_path, "fail", "elf")

    assert vmcore is None
    assert (
        note == "vmcore not taken: QEMU's dump failed: dump: failed to save memory: No space left on device"
    )
    assert list((tmp_path / "run").iterdir()) == []


def test_a_dump_that_does_not_finish_in_time_is_a_note_and_leaves_no_partial_file(tmp_path: Path) -> None:
    vmcore, note, commands = _dump(tmp_path, "hang", "elf", timeout=0.5)

    assert vmcore is None
    assert note == "vmcore not taken: QEMU's dump did not finish within 0.5s"
    assert commands[2]["arguments"]["format"] == "elf"  # type: ignore[index]
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ({"formats": ["elf", "kdump-zlib", "kdump-raw-zlib"]}, "kdump-raw-zlib"),
        ({"formats": ["elf", "kdump-lzo", "kdump-zlib"]}, "kdump-zlib"),
        ({"formats": ["elf", "win-dmp"]}, "elf"),
        ({}, "elf"),
        (None, "elf"),
    ],
)
def test_the_format_is_the_smallest_one_qemu_offers_else_elf(offered: object, chosen: str) -> None:
    assert choose_format(offered) == chosen


def _old_dump(runs: Path, run_id: str, size: int, mtime: int, live: bool = False) -> Path:
    path = runs / run_id / "vmcore"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\1" * size)
    os.utime(path, (mtime, mtime))
    if live:
        (runs / run_id / LIVE_LOCK).touch()
    return path


@pytest.mark.parametrize("room_after_removing", [True, False], ids=["made", "not-even-so"])
def test_room_for_a_dump_is_made_from_the_oldest_finished_runs_dumps_first(
    small_tmpfs: Mount, tmp_path: Path, room_after_removing: bool
) -> None:
    state = small_tmpfs(tmp_path / "state", 16 << 20).path
    runs = state / "runs"
    oldest = _old_dump(runs, "r1", 2 << 20, 100)
    going = _old_dump(runs, "r2", 2 << 20, 200, live=True)  # a run still going keeps its dump
    newer = _old_dump(runs, "r3", 2 << 20, 300)
    run_dir = runs / "r4"
    # Short of room by 1 MiB: the oldest dump alone makes it; by 5 MiB, all that may go would not.
    short = (1 << 20) if room_after_removing else (5 << 20)
    memory = free_bytes(state) - HEADROOM + short

    vmcore, note, _ = _dump(tmp_path, "ok", "kdump-zlib", run_dir=run_dir, memory=memory)

    assert going.exists() and newer.exists()
    if room_after_removing:
        assert note == "" and vmcore is not None
        assert not oldest.exists()
        assert (run_dir / "vmcore").exists()
    else:
        assert vmcore is None and note.startswith("vmcore skipped: ")
        assert oldest.exists(), "a dump removed for room that was never enough"
