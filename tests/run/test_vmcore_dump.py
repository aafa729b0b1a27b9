"""The QMP side of a vmcore against a stand-in QEMU (a real process speaking QMP, no guest).

The stand-in keeps every command it gets in a file, answers the capability query with the
formats it is given, writes the dump where `file:` says and then sends DUMP_COMPLETED —
or fails the dump, or never finishes it — as its mode says.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from nixvmd.run.vmcore import choose_format, take_vmcore
from nixvmd.vm.cmdline import Sockets
from nixvmd.vm.machine import Machine
from tests.vm.stand_in_qemu import STAND_IN_QEMU


def _dump(
    tmp_path: Path, mode: str, formats: str, timeout: float = 30
) -> tuple[object, str, list[dict[str, object]]]:
    log = tmp_path / "commands.jsonl"
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    argv = [sys.executable, "-c", STAND_IN_QEMU, str(sockets.qmp), str(log), mode, formats]
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    async def scenario() -> tuple[object, str]:
        machine = Machine(
            argv, sockets=sockets, console_log=tmp_path / "console.log", on_console=print, on_agent=print
        )
        async with machine:
            await machine.start()
            result = await take_vmcore(machine, run_dir, 1 << 20, timeout)
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
