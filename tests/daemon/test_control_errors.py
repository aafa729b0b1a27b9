"""The control server on a real Unix socket: a user's mistake gets one sentence back, a bug in
a handler is logged with its traceback, answered as an internal error, and the server goes on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.daemon import arguments
from nixvmd.daemon.control import ControlServer, Handler, Session
from nixvmd.errors import NixvmdError
from nixvmd.report.events import EventBus

REPLY_TIMEOUT = 10.0
Client = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


async def _planted_bug(_: dict[str, Any]) -> Any:
    table: dict[str, int] = {}
    return table["planted"]  # a KeyError raised by the handler's own code


async def _history(request: dict[str, Any]) -> Any:
    return {"limit": arguments.count(request, "limit", 20), "run_id": arguments.text(request, "run_id")}


async def _run(request: dict[str, Any]) -> Any:
    return {"tests": arguments.names(request, "tests")}


async def _refused(_: dict[str, Any]) -> Any:
    raise NixvmdError("no run 'x'; nixvmctl history lists the runs")


async def _status(_: dict[str, Any]) -> Any:
    return {"state": "idle"}


async def _broken_session(
    _: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    raise KeyError("planted in a session")


HANDLERS: dict[str, Handler] = {
    "boom": _planted_bug,
    "history": _history,
    "run": _run,
    "results": _refused,
    "status": _status,
}
SESSIONS: dict[str, Session] = {"console": _broken_session}


def _converse(socket_path: Path, requests: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Serve on `socket_path`; send each list of requests on a connection of its own; the replies."""

    async def main() -> list[list[dict[str, Any]]]:
        server = ControlServer(socket_path, HANDLERS, EventBus(), SESSIONS)
        await server.start()
        try:
            replies = []
            for batch in requests:
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
                got = []
                for request in batch:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    async with asyncio.timeout(REPLY_TIMEOUT):
                        line = await reader.readline()
                    assert line.endswith(b"\n"), f"no reply to {request}"
                    got.append(json.loads(line))
                writer.close()
                await writer.wait_closed()
                replies.append(got)
            return replies
        finally:
            await server.close()

    return asyncio.run(main())


def test_a_bug_in_a_handler_is_logged_with_its_traceback_and_the_server_keeps_serving(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        [replies] = _converse(short_tmp / "ctl.sock", [[{"cmd": "boom"}, {"cmd": "status"}]])
    bug, after = replies
    assert bug == {
        "ok": False,
        "error": "internal error in nixvmd while serving 'boom' (see the daemon's log)",
    }
    assert "planted" not in bug["error"]
    assert after == {"ok": True, "result": {"state": "idle"}}
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1
    assert "boom" in logged[0].getMessage()
    exc_info = logged[0].exc_info
    assert exc_info is not None and isinstance(exc_info[1], KeyError)
    assert "_planted_bug" in caplog.text  # the traceback itself, naming the handler


def test_a_bug_in_a_session_is_logged_and_other_connections_are_served(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        broken, fine = _converse(short_tmp / "ctl.sock", [[{"cmd": "console"}], [{"cmd": "status"}]])
    assert broken == [
        {"ok": False, "error": "internal error in nixvmd while serving 'console' (see the daemon's log)"}
    ]
    assert fine == [{"ok": True, "result": {"state": "idle"}}]
    assert any(r.exc_info is not None and isinstance(r.exc_info[1], KeyError) for r in caplog.records)
    assert "_broken_session" in caplog.text


MISTAKES: list[tuple[dict[str, Any], str]] = [
    # (the request, its whole error reply)
    (
        {"cmd": "frobnicate"},
        "unknown command 'frobnicate' (known: boom, console, history, results, run, status, subscribe)",
    ),
    ({"cmd": "history", "limit": "many"}, "history: limit must be a whole number, not 'many'"),
    ({"cmd": "history", "limit": -1}, "history: limit must be a whole number, not -1"),
    ({"cmd": "history", "limit": True}, "history: limit must be a whole number, not True"),
    ({"cmd": "history", "run_id": 7}, "history: run_id must be a string, not 7"),
    ({"cmd": "run", "tests": "generic/001"}, "run: tests must be a list of test names"),
    ({"cmd": "run", "tests": ["generic/001", ""]}, "run: tests must be a list of test names"),
    ({"cmd": "results"}, "no run 'x'; nixvmctl history lists the runs"),
    ({"cmd": "subscribe", "limit": 5}, "subscribe: limit must be 10..1000"),
]


def test_a_users_mistake_gets_one_sentence_and_nothing_is_logged_as_a_bug(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    requests = [request for request, _ in MISTAKES] + [{"cmd": "history", "limit": "5"}]
    with caplog.at_level(logging.ERROR):
        [replies] = _converse(short_tmp / "ctl.sock", [requests])
    assert replies[:-1] == [{"ok": False, "error": error} for _, error in MISTAKES]
    assert replies[-1] == {"ok": True, "result": {"limit": 5, "run_id": None}}
    assert all("\n" not in r["error"] for r in replies[:-1])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
