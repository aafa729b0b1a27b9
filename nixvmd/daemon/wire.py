"""The control socket's wire format: one JSON object per line each way, MAX_LINE bytes at most."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from nixvmd.errors import ControlError

MAX_LINE = 64 * 1024
T = TypeVar("T")


async def next_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, what: str) -> bytes | None:
    """The client's next line; None when it closed, or after a line over MAX_LINE (told so)."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        await send_message(writer, {"ok": False, "error": f"{what} longer than {MAX_LINE} bytes"})
        return None
    except asyncio.IncompleteReadError:
        return None


async def read_lines(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parse: Callable[[bytes], T],
    what: str,
) -> AsyncIterator[T]:
    """Each line from the client, parsed; until it closes or sends a line over MAX_LINE.

    A line `parse` refuses (ControlError) gets one error reply and is skipped; an oversized
    one gets an error reply and ends the conversation.
    """
    while (line := await next_line(reader, writer, what)) is not None:
        try:
            item = parse(line)
        except ControlError as exc:
            await send_message(writer, {"ok": False, "error": str(exc)})
            continue
        yield item


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line as a dict with a string "cmd"; ControlError saying what is wrong."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("malformed request: expected one JSON object per line") from None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ControlError('malformed request: expected {"cmd": "<command>", ...}')
    return request


async def send_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """Write one JSON line and wait until the peer took it (or the buffer has room)."""
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
