"""The event bus: fan-out in order, filtering by kind, slow subscribers never holding anyone up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nixvmd.report.events import EventBus, Subscription

GET_TIMEOUT = 5.0


@pytest.fixture
def bus() -> EventBus:
    """A bus with no subscribers yet."""
    return EventBus()


async def take(sub: Subscription, count: int) -> list[dict[str, Any]]:
    """The next `count` events of `sub`, waiting for each at most GET_TIMEOUT."""
    return [await asyncio.wait_for(sub.get(), GET_TIMEOUT) for _ in range(count)]


def pending(sub: Subscription) -> list[dict[str, Any]]:
    """Everything queued for `sub` right now, without waiting."""
    events = []
    while not sub.queue.empty():
        events.append(sub.queue.get_nowait())
    return events


def test_every_subscriber_gets_every_event_in_order(bus: EventBus) -> None:
    async def main() -> None:
        first = bus.subscribe()
        second = bus.subscribe()
        bus.publish("state", state="building")
        bus.publish("run", run_id="r1", outcome="passed")
        bus.publish("state", state="idle")

        for sub in (first, second):
            events = await take(sub, 3)
            assert [(e["event"], e.get("state"), e.get("run_id")) for e in events] == [
                ("state", "building", None),
                ("run", None, "r1"),
                ("state", "idle", None),
            ]
            assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
            assert all(isinstance(e["time"], float) for e in events)

    asyncio.run(main())


def test_a_waiting_subscriber_wakes_on_publish(bus: EventBus) -> None:
    async def main() -> None:
        sub = bus.subscribe()
        waiter = asyncio.create_task(take(sub, 1))
        await asyncio.sleep(0)
        bus.publish("kernel", version="6.1.0")
        (event,) = await waiter
        assert event["version"] == "6.1.0"

    asyncio.run(main())


def test_subscribers_get_only_the_kinds_they_asked_for(bus: EventBus) -> None:
    async def main() -> None:
        runs = bus.subscribe(kinds=["run"])
        everything = bus.subscribe()
        bus.publish("console", line="[    0.000000] Linux version 6.1.0")
        bus.publish("run", run_id="r1")
        bus.publish("log", message="hello")

        assert [e["event"] for e in pending(runs)] == ["run"]
        assert [e["event"] for e in pending(everything)] == ["console", "run", "log"]

    asyncio.run(main())


def test_a_full_subscriber_drops_and_is_told_how_many(bus: EventBus) -> None:
    async def main() -> None:
        slow = bus.subscribe(limit=3)
        for n in range(1, 6):
            bus.publish("test", n=n)

        assert [e["n"] for e in await take(slow, 3)] == [1, 2, 3]
        bus.publish("test", n=6)

        events = await take(slow, 2)
        assert events[0]["event"] == "dropped"
        assert events[0]["count"] == 2
        assert events[1]["n"] == 6
        assert pending(slow) == []

    asyncio.run(main())


def test_the_dropped_count_covers_everything_missed(bus: EventBus) -> None:
    async def main() -> None:
        slow = bus.subscribe(limit=2)
        for n in range(10):
            bus.publish("test", n=n)
        await take(slow, 2)
        for n in range(10, 13):
            bus.publish("test", n=n)

        events = [await asyncio.wait_for(slow.get(), GET_TIMEOUT) for _ in range(2)]
        assert [e["event"] for e in events] == ["dropped", "test"]
        assert events[0]["count"] == 8
        assert events[1]["n"] == 10

    asyncio.run(main())


def test_a_filtered_subscriber_does_not_count_what_it_did_not_ask_for(bus: EventBus) -> None:
    async def main() -> None:
        runs = bus.subscribe(kinds=["run"], limit=2)
        for n in range(100):
            bus.publish("console", n=n)
        bus.publish("run", run_id="r1")

        assert [e["event"] for e in pending(runs)] == ["run"]

    asyncio.run(main())


def test_publishing_never_blocks_on_a_slow_subscriber(bus: EventBus) -> None:
    async def main() -> None:
        stuck = bus.subscribe(limit=1)
        healthy = bus.subscribe(limit=20000)
        for n in range(10000):
            bus.publish("console", n=n)

        assert [e["n"] for e in pending(healthy)] == list(range(10000))
        assert [e["n"] for e in pending(stuck)] == [0]

    asyncio.run(main())


def test_publishing_without_subscribers_is_fine(bus: EventBus) -> None:
    bus.publish("state", state="idle")

    assert bus.subscribers == 0


def test_an_unsubscribed_queue_gets_nothing_more(bus: EventBus) -> None:
    async def main() -> None:
        sub = bus.subscribe()
        bus.publish("state", state="building")
        bus.unsubscribe(sub)
        bus.publish("state", state="idle")

        assert [e["state"] for e in pending(sub)] == ["building"]
        assert bus.subscribers == 0

    asyncio.run(main())
