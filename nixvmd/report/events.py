"""The event stream: what the daemon tells subscribers as it happens, never waiting for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = (
    "state",
    "log",
    "build",
    "console",
    "console-bytes",
    "test",
    "run",
    "regression",  # a run's first regression, while the run goes on
    "kernel",
    "config",
    "ssh",  # current.ssh's news: the VM's forwarded port, its sshd up (or why not)
    "bisect",  # a bisect's status after each step and at its end
    "queued",  # a tree change whose tests run after the full run in flight (status `queued`)
    "dropped",
)


@dataclass(eq=False)
class Subscription:
    """One subscriber's bounded queue; when full, events are dropped and counted."""

    kinds: frozenset[str]
    limit: int = 1000
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.limit)

    def offer(self, event: dict[str, Any]) -> None:
        if event["event"] not in self.kinds:
            return
        if self.dropped and self.queue.qsize() < self.limit - 1:
            self.queue.put_nowait({"event": "dropped", "count": self.dropped, "time": time.time()})
            self.dropped = 0
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


class EventBus:
    """Fans events out to subscriptions; publishing never blocks and never fails."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.seq = 0

    def subscribe(self, kinds: Iterable[str] = EVENT_KINDS, limit: int = 1000) -> Subscription:
        sub = Subscription(frozenset(kinds) | {"dropped"}, limit)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, **data: Any) -> None:
        if not self._subs:
            return
        self.seq += 1
        event = {"event": kind, "seq": self.seq, "time": time.time(), **data}
        for sub in self._subs:
            sub.offer(event)
