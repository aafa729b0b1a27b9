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

FAKE_QEMU = r"""
import json, socket, sys, time
qmp, log, mode, formats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
s = socket.socket(socket.AF_UNIX)
s.connect(qmp)
def send(obj):
    s.sendall(json.dumps(obj).encode() + b"\r\n")
send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}})
decoder, buf = json.JSONDecoder(), ""
while chunk := s.recv(4096):
    buf += chunk.decode()
    while buf.strip():
        try:
            msg, end = decoder.raw_decode(buf.lstrip())
        except ValueError:
            break
        buf = buf.lstrip()[end:]
        command = msg.get("execute")
        with open(log, "a") as f:
            f.write(json.dumps({"execute": command, "arguments": msg.get("arguments", {})}) + "\n")
        reply = {"return": {}}
        if command == "query-dump-guest-memory-capability":
            reply = {"return": {"formats": formats}}
        send({**reply, **({"id": msg["id"]} if "id" in msg else {})})
        if command == "dump-guest-memory":
            path = msg["arguments"]["protocol"].removeprefix("file:")
            with open(path, "wb") as f:
                f.write(b"KDUMP   half a dump")
            data = {"result": {"status": "completed", "completed": 19, "total": 19}}
            if mode == "fail":
                data = {"result": {"status": "failed", "completed": 0, "total": 19},
                        "error": "dump: failed to save memory: No space left on device"}
            if mode != "hang":
                stamp = {"seconds": 0, "microseconds": 0}
                send({"event": "DUMP_COMPLETED", "data": data, "timestamp": stamp})
        if command == "quit":
            sys.exit(0)
"""


def _dump(
    tmp_path: Path, mode: str, formats: str, timeout: float = 30
) -> tuple[object, str, list[dict[str, object]]]:
    log = tmp_path / "commands.jsonl"
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    argv = [sys.executable, "-c", FAKE_QEMU, str(sockets.qmp), str(log), mode, formats]
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
