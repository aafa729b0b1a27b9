"""The guest's running time: a run's timeouts count only while QEMU lets the guest run.

A guest held at its first instruction for gdb (`-S`), or stopped at a breakpoint, is not
slow: vm.boot_timeout, suite.timeout and a suite's per-test hang limits pause while QEMU
says the guest is not running. QEMU tells that by QMP: `query-status` (`running`, and a
`status` such as "prelaunch" or "debug") and the STOP and RESUME events after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

_CHANGED = ""  # the name of GuestTime's own event among the ones a wait is given


async def first_set(events: Mapping[str, asyncio.Event], timeout: float | None) -> str | None:
    """Wait until one of `events` is set; its name, or None on timeout."""
    for name, event in events.items():
        if event.is_set():
            return name
    waiters = {asyncio.create_task(e.wait()): name for name, e in events.items()}
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
    return waiters[next(iter(done))] if done else None


class GuestTime:
    """Whether the guest runs, and for how long it was held stopped.

    `running=False` for a guest started with `-S`. `ran` is set once the guest has run.
    """

    def __init__(self, *, running: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stopped_at: float | None = None if running else clock()
        self._stopped_before = 0.0
        self._changed = asyncio.Event()
        self.ran = asyncio.Event()
        if running:
            self.ran.set()
        self._pushed: dict[float, float] = {}

    @property
    def running(self) -> bool:
        return self._stopped_at is None

    def stopped_seconds(self) -> float:
        """How long the guest has been held stopped in all (the stop going on included)."""
        now = self._clock()
        return self._stopped_before + (now - self._stopped_at if self._stopped_at is not None else 0.0)

    def stopwatch(self) -> Callable[[], float]:
        """A function giving the guest's running seconds since this call."""
        start, stopped = self._clock(), self.stopped_seconds()
        return lambda: (self._clock() - start) - (self.stopped_seconds() - stopped)

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = self._clock()
            self._tell()

    def resume(self) -> None:
        if self._stopped_at is not None:
            self._stopped_before += self._clock() - self._stopped_at
            self._stopped_at = None
            self.ran.set()
            self._tell()

    def _tell(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def qmp_event(self, name: str) -> None:
        """QMP's STOP (a breakpoint, gdb's interrupt, a `stop`) and RESUME (gdb's continue, `cont`)."""
        if name == "STOP":
            self.stop()
        elif name == "RESUME":
            self.resume()

    def qmp_status(self, status: Any) -> None:
        """What QMP `query-status` answered: `{"running": bool, "status": "prelaunch" | ...}`."""
        if not isinstance(status, dict) or "running" not in status:
            return
        if status["running"]:
            self.resume()
        else:
            self.stop()

    def pushed_back(self, limit: float) -> float:
        """A time.monotonic() `limit` set while the guest ran, later by as long as the guest
        was stopped since it was first seen (the suite keeps a test's limit as it is)."""
        base = self._pushed.setdefault(limit, self.stopped_seconds())
        return limit + self.stopped_seconds() - base

    async def wait(self, events: Mapping[str, asyncio.Event], seconds: float) -> str | None:
        """Wait for one of `events` for at most `seconds` of the guest's running time: its
        name, or None when they have run out (while the guest is stopped they never do)."""
        spent = self.stopwatch()
        while True:
            left = seconds - spent()
            if left <= 0 and self.running:
                return None
            got = await first_set({**events, _CHANGED: self._changed}, left if self.running else None)
            if got is not None and got != _CHANGED:
                return got
