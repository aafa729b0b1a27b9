"""After a run: every channel that tells someone about it (desktop, the user's hook, ...).

A channel is a `Reporter`; the daemon holds one `FanOut` built once at start and calls
only it. A channel that also `HearsRegressions` is told of a run's first regression while
the run goes on (the desktop; not the hook, which is given finished runs only). A channel
that fails is logged with its name and the others still run: a broken notification must
neither break the daemon nor silence the hook.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from nixvmd.config.schema import Config
from nixvmd.report.desktop import DesktopNotifier
from nixvmd.report.hook import run_hook
from nixvmd.report.notification import parse_triggers
from nixvmd.results.first_regression import FirstRegression
from nixvmd.results.record import RunRecord

log = logging.getLogger("nixvmd")


class Reporter(Protocol):
    """One way of telling about a finished run."""

    name: str

    async def report(self, record: RunRecord, config: Config) -> None:
        """Tell about `record` as `config` (its [notify] section) asks; may raise, is logged."""
        ...

    async def close(self) -> None:
        """Let go of connections (the daemon stops)."""
        ...


@runtime_checkable
class HearsRegressions(Protocol):
    """A channel that wants a run's first regression as soon as it is seen (optional)."""

    async def first_regression(self, found: FirstRegression, config: Config) -> None:
        """Tell about `found` as `config` (its [notify] section) asks; may raise, is logged."""
        ...


class DesktopChannel:
    """A desktop notification for the events `notify.on` names."""

    name = "desktop"

    def __init__(self, notifier: DesktopNotifier | None = None) -> None:
        self.notifier = notifier or DesktopNotifier()

    async def report(self, record: RunRecord, config: Config) -> None:
        await self.notifier.report_run(record.summary(), on=parse_triggers(config.notify.on))

    async def first_regression(self, found: FirstRegression, config: Config) -> None:
        await self.notifier.report_first_regression(found, on=parse_triggers(config.notify.on))

    async def close(self) -> None:
        await self.notifier.close()


class HookChannel:
    """The user's `notify.command`, with the run record as JSON on stdin."""

    name = "hook"

    async def report(self, record: RunRecord, config: Config) -> None:
        if config.notify.command:
            await run_hook(config.notify.command, record.to_json())

    async def close(self) -> None:
        """Nothing held between runs."""


# A channel factory makes its channel once, at daemon start; it reads [notify] on each report.
ChannelFactory = Callable[[], Reporter]
_CHANNELS: dict[str, ChannelFactory] = {"desktop": DesktopChannel, "hook": HookChannel}


def register_channel(name: str, factory: ChannelFactory) -> None:
    """Add a channel every daemon started afterwards reports to (a plugin module calls this)."""
    _CHANNELS[name] = factory


class FanOut:
    """Every channel, one after the other; a failing one is logged and the rest still run."""

    name = "fan-out"

    def __init__(self, channels: Sequence[Reporter]) -> None:
        self.channels = tuple(channels)

    async def report(self, record: RunRecord, config: Config) -> None:
        for channel in self.channels:
            await _tell(channel, channel.report(record, config), f"run {record.id}")

    async def first_regression(self, found: FirstRegression, config: Config) -> None:
        """Tell the channels that hear regressions mid-run; a failing one is logged."""
        for channel in self.channels:
            if isinstance(channel, HearsRegressions):
                await _tell(
                    channel, channel.first_regression(found, config), f"run {found.run_id}'s first regression"
                )

    async def close(self) -> None:
        for channel in self.channels:
            try:
                await channel.close()
            except Exception:
                log.exception("closing the %s channel failed", channel.name)


async def _tell(channel: Reporter, telling: Awaitable[None], about: str) -> None:
    """Await one channel's report; its failure is logged with its traceback, never raised."""
    try:
        await telling
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the %s report of %s failed", channel.name, about)


def build_reporter() -> FanOut:
    """The fan-out over every registered channel."""
    return FanOut([factory() for factory in _CHANNELS.values()])
