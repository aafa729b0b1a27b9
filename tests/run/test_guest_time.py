"""The run's timeouts pause while QEMU holds the guest: a clock of its own, then a real QEMU held with -S."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from nixvmd.run.guest_time import GuestTime
from nixvmd.vm.cmdline import Sockets
from nixvmd.vm.gdbstub import GdbMode, GdbStub, gdbstub_options
from nixvmd.vm.machine import Machine


class Clock:
    """time.monotonic() as the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stopped_time_does_not_count_as_running_time() -> None:
    clock = Clock()
    guest = GuestTime(running=False, clock=clock)  # held with -S from the start
    spent = guest.stopwatch()
    clock.now += 300  # waiting for gdb
    guest.resume()
    clock.now += 5
    guest.stop()  # a breakpoint
    clock.now += 60
    assert spent() == 5
    assert guest.stopped_seconds() == 360
    guest.resume()
    clock.now += 1
    assert spent() == 6


def test_a_hang_limit_moves_by_the_stops_after_it_was_set() -> None:
    clock = Clock()
    guest = GuestTime(clock=clock)
    clock.now += 100  # the guest ran: stops before the limit was set do not move it
    limit = clock.now + 30
    assert guest.pushed_back(limit) == limit
    guest.stop()
    clock.now += 50
    guest.resume()
    assert guest.pushed_back(limit) == limit + 50
    assert guest.pushed_back(limit + 1) == limit + 1  # a new test's limit starts from now


def test_the_guest_has_run_once_it_resumes() -> None:
    held = GuestTime(running=False)
    assert not held.ran.is_set() and not held.running
    held.qmp_status({"running": False, "status": "prelaunch"})
    assert not held.running
    held.qmp_event("RESUME")
    assert held.ran.is_set() and held.running
    held.qmp_event("STOP")
    assert not held.running and held.ran.is_set()
    held.qmp_status({"running": True, "status": "running"})
    assert held.running
    assert GuestTime().ran.is_set()


def test_a_wait_with_no_time_left_lasts_while_the_guest_is_stopped() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        stopped = GuestTime(running=False)
        news = asyncio.Event()
        asyncio.get_running_loop().call_soon(news.set)
        # Zero seconds of running time: only a stopped clock lets the news arrive first.
        held = await stopped.wait({"news": news}, 0)
        running = GuestTime()
        later = asyncio.Event()
        asyncio.get_running_loop().call_soon(later.set)
        return held, await running.wait({"later": later}, 0)

    assert asyncio.run(scenario()) == ("news", None)


def test_a_resume_ends_a_wait_whose_time_ran_out_while_stopped() -> None:
    async def scenario() -> str | None:
        guest = GuestTime(running=False)
        asyncio.get_running_loop().call_soon(guest.resume)
        return await guest.wait({"never": asyncio.Event()}, 0)

    assert asyncio.run(scenario()) is None


QEMU = shutil.which("qemu-system-x86_64")


@pytest.mark.vm
@pytest.mark.skipif(QEMU is None, reason="needs qemu-system-x86_64")
def test_a_qemu_held_with_dash_s_stops_the_clock_until_it_runs(short_tmp: Path) -> None:
    """A real QEMU with no kernel: held by -S ("prelaunch"), let go by QMP cont, stopped by QMP stop."""

    async def scenario() -> tuple[object, str | None, bool]:
        guest = GuestTime()
        stopped = asyncio.Event()

        def on_event(name: str, data: dict[str, Any]) -> None:
            guest.qmp_event(name)
            if name == "STOP":
                stopped.set()

        sockets = Sockets(short_tmp / "qmp", short_tmp / "agent")
        stub = GdbStub(short_tmp / "gdb", GdbMode.WAIT)
        argv = [
            str(QEMU),
            *("-nodefaults", "-display", "none", "-machine", "pc", "-accel", "tcg"),
            *("-chardev", f"socket,id=qmp,path={sockets.qmp}", "-mon", "chardev=qmp,mode=control"),
            *gdbstub_options(stub),
        ]
        machine = Machine(
            argv,
            sockets=sockets,
            console_log=short_tmp / "console.log",
            on_console=lambda line: None,
            on_agent=lambda line: None,
            on_event=on_event,
            stderr_log=short_tmp / "qemu.log",
        )
        async with machine:
            await machine.start()
            status = await machine.execute("query-status")
            guest.qmp_status(status)
            assert stub.socket.is_socket()  # the stub listens for gdb meanwhile
            # No running time left, and still the wait lasts until QEMU lets the guest go.
            waiting = asyncio.create_task(guest.wait({"ran": guest.ran}, 0))
            await machine.execute("cont")
            first = await waiting
            await machine.execute("stop")
            await asyncio.wait_for(stopped.wait(), 30)
            running_after_stop = guest.running
            await machine.quit()
        return status, first, running_after_stop

    status, first, running_after_stop = asyncio.run(scenario())
    assert isinstance(status, dict) and status["running"] is False and status["status"] == "prelaunch"
    assert first == "ran"
    assert running_after_stop is False
