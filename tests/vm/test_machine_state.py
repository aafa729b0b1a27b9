"""Machine's run state without a guest: real processes standing in for QEMU (one speaks QMP, one dies)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from nixvmd.errors import VMError
from nixvmd.vm.cmdline import Sockets
from nixvmd.vm.machine import Machine, RunState
from tests.vm.stand_in_qemu import STAND_IN_QEMU


def _machine(tmp_path: Path, argv: list[str]) -> Machine:
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    return Machine(
        argv,
        sockets=sockets,
        console_log=tmp_path / "console.log",
        on_console=lambda line: None,
        on_agent=lambda line: None,
        stderr_log=tmp_path / "qemu.log",
        connect_timeout=30,
    )


def _fake_qemu(tmp_path: Path) -> Machine:
    # The stand-in QEMU (tests/vm/stand_in_qemu.py) speaks QMP, answers every command, ends on `quit`.
    argv = [
        sys.executable,
        "-c",
        STAND_IN_QEMU,
        str(tmp_path / "qmp"),
        str(tmp_path / "qmp.jsonl"),
        "ok",
        "elf",
    ]
    return _machine(tmp_path, argv)


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_machine_goes_idle_running_gone_and_cannot_start_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _fake_qemu(tmp_path) as machine:
            assert machine.state is RunState.IDLE
            await machine.start()
            assert machine.state is RunState.RUNNING  # type: ignore[comparison-overlap]  # start() moved it
            machine.write_console(b"typed\r")  # allowed while running
            await machine.quit()
            assert machine.state is RunState.GONE
            assert machine.exited.is_set() and machine.returncode == 0
            await machine.quit()  # again: nothing to do
            with pytest.raises(VMError, match=r"Machine.start\(\) needs the machine IDLE; it is GONE"):
                await machine.start()
        assert machine.state is RunState.GONE

    _run(scenario)


def test_starting_twice_says_which_state_was_needed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _fake_qemu(tmp_path) as machine:
            await machine.start()
            with pytest.raises(VMError, match=r"Machine.start\(\) needs the machine IDLE; it is RUNNING"):
                await machine.start()
            assert machine.state is RunState.RUNNING  # the refused call changed nothing

    _run(scenario)


def test_quit_and_writes_before_start_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _fake_qemu(tmp_path) as machine:
            with pytest.raises(VMError, match=r"Machine.quit\(\) needs the machine STARTING or RUNNING"):
                await machine.quit()
            with pytest.raises(
                VMError, match=r"Machine.write_console\(\) needs the machine STARTING or RUNNING; it is IDLE"
            ):
                machine.write_console(b"x")
            with pytest.raises(
                VMError, match=r"Machine.write_agent\(\) needs the machine STARTING or RUNNING; it is IDLE"
            ):
                machine.write_agent(b"x")
            with pytest.raises(VMError, match=r"Machine.execute\(\) needs the machine RUNNING; it is IDLE"):
                await machine.execute("query-status")
            assert machine.state is RunState.IDLE
            assert machine.process is None  # nothing was started by any of them

    _run(scenario)


def test_qemu_exiting_during_start_is_a_clear_error_and_the_machine_is_gone(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('qemu: bad option', file=sys.stderr); sys.exit(3)"]

    async def scenario() -> None:
        async with _machine(tmp_path, argv) as machine:
            with pytest.raises(VMError) as caught:
                await machine.start()
            assert str(caught.value) == "QEMU did not come up (exit status 3): qemu: bad option"
            assert machine.state is RunState.GONE
            machine.write_console(b"late")  # a guest that went: the bytes are dropped, not raised about
            await machine.quit()  # nothing to end

    _run(scenario)


def test_a_program_that_does_not_exist_leaves_the_machine_gone(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _machine(tmp_path, [str(tmp_path / "no-such-qemu")]) as machine:
            with pytest.raises(VMError, match=r"cannot start .*no-such-qemu: No such file or directory"):
                await machine.start()
            assert machine.state is RunState.GONE

    _run(scenario)


def test_writes_after_the_guest_went_are_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _fake_qemu(tmp_path) as machine:
            await machine.start()
            await machine.quit()
            machine.write_agent(b"job\n")
            machine.write_console(b"typed\r")
            assert machine.state is RunState.GONE

    _run(scenario)
