"""`nixvmctl run --gdb` asks for a gdbstub; `nixvmctl gdb` prints, or execs, the command status names.

nixvmctl runs as a real subprocess against a stand-in daemon (a real Unix socket, a thread).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ctl.failures import CTL, assert_failed_with_one_sentence, run_ctl
from tests.ctl.test_exit_codes import STATUS, FakeDaemon, _request

ARGV = ["gdb", "/src/linux/vmlinux", "-ex", "target remote /run/user/1000/nixvmd-vm-x/gdb"]
COMMAND = "gdb /src/linux/vmlinux -ex 'target remote /run/user/1000/nixvmd-vm-x/gdb'"
GDB = {"target": "/run/user/1000/nixvmd-vm-x/gdb", "mode": "wait", "command": COMMAND, "argv": ARGV}
CURRENT = {"run_id": "r1", "phase": "waiting for gdb", "test": None, "done": 0, "total": None, "gdb": GDB}


Answering = Callable[[dict[str, Any]], Path]


@pytest.fixture
def seen() -> list[dict[str, object]]:
    """The requests the stand-in daemons were sent."""
    return []


@pytest.fixture
def answering(short_tmp: Path, seen: list[dict[str, object]]) -> Iterator[Answering]:
    """A stand-in daemon that answers one request with a result; its socket."""
    fakes: list[FakeDaemon] = []

    def start(result: dict[str, Any]) -> Path:
        def behaviour(conn: socket.socket) -> None:
            seen.append(_request(conn))
            conn.sendall(json.dumps({"ok": True, "result": result}).encode() + b"\n")

        fakes.append(FakeDaemon(short_tmp / f"fake{len(fakes)}.sock", behaviour))
        return fakes[-1].path

    yield start
    for fake in fakes:
        fake.close()


def test_gdb_prints_the_command_of_the_run_under_gdb(
    answering: Answering, seen: list[dict[str, object]]
) -> None:
    done = run_ctl(answering({**STATUS, "state": "booting", "current": CURRENT}), "gdb")
    assert done.returncode == 0, done.stderr
    assert done.stdout == COMMAND + "\n"
    assert done.stderr.startswith("nixvmctl: warning: no /src/linux/vmlinux: gdb has no symbols")
    assert seen == [{"cmd": "status"}]


def test_gdb_without_a_run_under_gdb_says_how_to_start_one(answering: Answering) -> None:
    done = run_ctl(answering(STATUS), "gdb")
    assert_failed_with_one_sentence(done, "no run with a gdbstub", "nixvmctl run --gdb")


def test_gdb_exec_becomes_gdb_with_the_command(answering: Answering, tmp_path: Path) -> None:
    # A stand-in gdb on PATH that writes down the arguments it was started with.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    said = tmp_path / "args"
    gdb = bin_dir / "gdb"
    gdb.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\n')
    gdb.chmod(gdb.stat().st_mode | stat.S_IEXEC)
    sock = answering({**STATUS, "current": CURRENT})
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    argv = [*CTL, "--socket", str(sock), "gdb", "--exec"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert said.read_text().splitlines() == ARGV[1:]


def test_run_gdb_asks_for_a_waiting_or_a_running_guest(
    answering: Answering, seen: list[dict[str, object]]
) -> None:
    reply = {"plan": "run requested", "tests": [], "gdb": "wait", "starts": True, "kernel_version": "6.1.0"}
    waiting = run_ctl(answering(reply), "run", "--gdb")
    assert waiting.returncode == 0, waiting.stderr
    assert "the guest waits at its first instruction; nixvmctl gdb prints the command" in waiting.stdout
    nowait = run_ctl(answering({**reply, "gdb": "nowait"}), "run", "--gdb=nowait")
    assert nowait.returncode == 0, nowait.stderr
    assert "with a gdbstub: nixvmctl gdb prints the command" in nowait.stdout
    plain = run_ctl(answering({**reply, "gdb": None}), "run")
    assert "gdb" not in plain.stdout
    assert [r.get("gdb") for r in seen] == ["wait", "nowait", None]
