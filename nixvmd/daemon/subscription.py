"""A `subscribe` request: the connection becomes a stream of the daemon's events until the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from nixvmd.daemon.wire import MAX_LINE, send_message
from nixvmd.errors import ControlError
from nixvmd.report.events import EVENT_KINDS, EventBus, Subscription

# A subscriber may ask for a smaller queue than the bus's default (a client that wants to
# see drops early, or a console that only needs recent lines), never a larger one.
MIN_QUEUE, MAX_QUEUE = 10, 1000


def subscription_of(request: dict[str, Any]) -> tuple[list[str], int]:
    """The event kinds and queue limit a subscribe request asks for; ControlError when invalid."""
    kinds = request.get("events") or list(EVENT_KINDS)
    if not isinstance(kinds, list) or not all(k in EVENT_KINDS for k in kinds):
        raise ControlError(f"subscribe: events must be a list of {', '.join(EVENT_KINDS)}")
    limit = request.get("limit", MAX_QUEUE)
    if not isinstance(limit, int) or isinstance(limit, bool) or not MIN_QUEUE <= limit <= MAX_QUEUE:
        raise ControlError(f"subscribe: limit must be {MIN_QUEUE}..{MAX_QUEUE}")
    return kinds, limit


async def event_stream(
    events: EventBus,
    kinds: list[str],
    limit: int,
    _request: dict[str, Any],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Say the subscription is on, then send each event of `kinds` until the client hangs up."""
    sub = events.subscribe(kinds, limit)
    try:
        await send_message(writer, {"ok": True, "result": {"subscribed": kinds}})
        # A subscriber says nothing more; watching for its hang-up frees its place at once,
        # not at the next event.
        await until_one_ends(_forward(sub, writer), _until_closed(reader))
    finally:
        events.unsubscribe(sub)


async def until_one_ends(*parts: Coroutine[Any, Any, None]) -> None:
    """Run the halves of a stream (out to the client, in from it) until one ends; then end them all."""
    tasks = [asyncio.create_task(part) for part in parts]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


async def _forward(sub: Subscription, writer: asyncio.StreamWriter) -> None:
    while True:
        await send_message(writer, await sub.get())


async def _until_closed(reader: asyncio.StreamReader) -> None:
    while await reader.read(MAX_LINE):
        pass
