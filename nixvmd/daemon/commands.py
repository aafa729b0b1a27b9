"""The control socket's commands: what each request does to the daemon, and the console session."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from nixvmd.daemon import arguments
from nixvmd.daemon.bisecting import bisect_request
from nixvmd.daemon.control import Handler, Session
from nixvmd.daemon.loop import Daemon
from nixvmd.daemon.subscription import until_one_ends
from nixvmd.daemon.wire import read_lines, send_message
from nixvmd.errors import ConfigError, ControlError, KernelImageError
from nixvmd.plan.planner import Changes, Step
from nixvmd.report.events import Subscription
from nixvmd.results.dump_query import run_dumps
from nixvmd.results.known import accept_failures, list_known, remove_known
from nixvmd.results.queries import run_console, run_history, run_results

log = logging.getLogger("nixvmd")

# Console lines a slow console client may fall behind by before it is told of drops.
CONSOLE_QUEUE = 1000
# How long the daemon waits for a nixvmctl that is changing the baseline itself.
BASELINE_WAIT_S = 10.0


def handlers(daemon: Daemon) -> dict[str, Handler]:
    """The control socket's request/reply commands."""

    async def status(_: dict[str, Any]) -> Any:
        return daemon.status()

    async def run(req: dict[str, Any]) -> Any:
        tests = arguments.names(req, "tests")
        if daemon.kernel_space_error is not None:
            daemon.check_kernel(announce=True)  # the newest kernel found no room before; try again
        if daemon.kernel_space_error is not None:
            raise daemon.kernel_space_error
        if daemon.kernel is None:
            raise KernelImageError(daemon.kernel_error or "no bootable kernel yet")
        fresh = arguments.flag(req, "fresh")
        gdb = arguments.gdb_mode(req, "gdb")
        decision = daemon.request(Changes(requested=True), tuple(tests), fresh=fresh, gdb=gdb)
        return {
            "plan": decision.reason,
            "tests": tests,
            "fresh": fresh,
            "gdb": gdb,
            "kernel_version": daemon.kernel.release,
            "starts": Step.START_RUN in decision,
            "cancels": Step.CANCEL_RUN in decision,
        }

    async def results(req: dict[str, Any]) -> Any:
        return run_results(daemon.store, arguments.text(req, "run_id"))

    async def dump(req: dict[str, Any]) -> Any:
        # In a thread: a flattened kdump file is read record by record for its VMCOREINFO.
        return await asyncio.to_thread(
            run_dumps, daemon.store, arguments.text(req, "run_id"), daemon.config.kernel.tree
        )

    async def history(req: dict[str, Any]) -> Any:
        return run_history(daemon.store, arguments.count(req, "limit", 20))

    async def logs(req: dict[str, Any]) -> Any:
        if (run_id := arguments.text(req, "run_id")) is not None:
            return run_console(daemon.store, run_id)
        return {"lines": list(daemon.logs.lines)[-arguments.count(req, "lines", 200) :]}

    async def pause(_: dict[str, Any]) -> Any:
        daemon.pause()
        return {"paused": True}

    async def resume(_: dict[str, Any]) -> Any:
        p = daemon.resume()
        return {"paused": False, "plan": p.reason if p else None}

    async def stop(_: dict[str, Any]) -> Any:
        run_id = daemon.current["run_id"] if daemon.current is not None else None
        await daemon.cancel_run("cancelled by nixvmctl stop")
        return {"cancelled": run_id is not None, "run_id": run_id}

    async def reload(_: dict[str, Any]) -> Any:
        changes = daemon.reload_config()
        if daemon.config_error is not None:
            # A refused file is a failed request: `nixvmctl reload` must not exit 0 on it.
            raise ConfigError([f"config refused, the last good one stays in force:\n{daemon.config_error}"])
        if changes:
            daemon.request(changes)
        return {"error": None}

    async def shutdown(_: dict[str, Any]) -> Any:
        daemon.stopped.set()
        return {"stopping": True}

    async def baseline_list(_: dict[str, Any]) -> Any:
        return list_known(daemon.config)

    async def baseline_accept(req: dict[str, Any]) -> Any:
        run_id = arguments.text(req, "run_id")
        accept = functools.partial(accept_failures, daemon.store, daemon.config, run_id)
        result = await _under_baseline_lock(accept)
        log.info(
            "baseline %s: accepted %d failure(s) of run %s",
            result["baseline"],
            len(result["accepted"]),
            result["run_id"],
        )
        return result

    async def baseline_remove(req: dict[str, Any]) -> Any:
        tests = arguments.names(req, "tests")
        result = await _under_baseline_lock(functools.partial(remove_known, daemon.config, tests))
        log.info("baseline %s: removed %s", result["baseline"], ", ".join(result["removed"]))
        return result

    return {
        "status": status,
        "run": run,
        "results": results,
        "history": history,
        "dump": dump,
        "logs": logs,
        "pause": pause,
        "resume": resume,
        "stop": stop,
        "reload": reload,
        "shutdown": shutdown,
        "baseline-list": baseline_list,
        "baseline-accept": baseline_accept,
        "baseline-remove": baseline_remove,
        "bisect": functools.partial(bisect_request, daemon),
    }


async def _under_baseline_lock(change: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Run a baseline change in a worker thread: waiting for the lock must not stall the loop.

    The change logs nothing itself (the log reaches subscribers, which live on the loop);
    a wait for the lock is logged here, on the loop.
    """
    loop = asyncio.get_running_loop()

    def on_wait(message: str) -> None:
        loop.call_soon_threadsafe(log.warning, "baseline: %s", message)

    return await asyncio.to_thread(change, wait_s=BASELINE_WAIT_S, on_wait=on_wait)


def sessions(daemon: Daemon) -> dict[str, Session]:
    """The control socket's commands that take the connection over."""

    async def console(
        req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await console_session(daemon, reader, writer, req)

    return {"console": console}


async def console_session(
    daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any]
) -> None:
    """Attach a client to the running guest's serial console (`shard` N: that shard's guest).

    The client gets {"ok": true, "result": {"attached": RUN_ID, ...}}, then the run's
    `console-bytes` events — raw output as it comes, so a prompt shows before its newline —
    (and `dropped` notices), and last the run's `run end`
    event; it sends {"input": TEXT} lines, typed into the console as they are. Keystrokes
    travel as text: bytes that are not UTF-8 are carried as surrogate escapes. The session
    ends when the client closes the connection or the run ends; the suite is not disturbed.
    """
    sub = daemon.events.subscribe(["console-bytes", "run"], CONSOLE_QUEUE)
    try:
        current = daemon.current
        if current is None:
            await send_message(
                writer,
                {
                    "ok": False,
                    "error": "no guest is running; the console attaches to a run's VM "
                    "(nixvmctl run starts one)",
                },
            )
            return
        run_id = current["run_id"]
        try:
            shard = _console_shard(current, request)
        except ControlError as exc:
            await send_message(writer, {"ok": False, "error": str(exc)})
            return
        kernel = daemon.kernel.release if daemon.kernel else None
        result = {"attached": run_id, "kernel_version": kernel, **({} if shard is None else {"shard": shard})}
        await send_message(writer, {"ok": True, "result": result})
        await until_one_ends(
            _console_output(sub, run_id, shard, writer), _console_input(daemon, reader, writer, shard or 0)
        )
    finally:
        daemon.events.unsubscribe(sub)


def _console_shard(current: dict[str, Any], request: dict[str, Any]) -> int | None:
    """The shard whose console `request` asks for: None for a run without shards, else 0 unless named."""
    shards = current.get("shards")
    if request.get("shard") is None:
        return 0 if shards else None
    shard = arguments.count(request, "shard", 0)
    if not shards:
        raise ControlError(f"run {current['run_id']} has no shards; leave out --shard")
    if shard >= len(shards):
        raise ControlError(
            f"run {current['run_id']} has {len(shards)} shards (0 to {len(shards) - 1}); "
            f"there is no shard {shard}"
        )
    return shard


async def _console_output(
    sub: Subscription, run_id: str, shard: int | None, writer: asyncio.StreamWriter
) -> None:
    while True:
        event = await sub.get()
        kind = event["event"]
        ours = event.get("run_id") == run_id and event.get("shard") == shard
        if kind == "dropped" or (kind == "console-bytes" and ours):
            await send_message(writer, event)
        elif kind == "run" and event.get("phase") == "end" and event.get("run_id") == run_id:
            await send_message(writer, event)
            return


async def _console_input(
    daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, shard: int
) -> None:
    async for text in read_lines(reader, writer, _console_text, "input line"):
        # Between runs' QEMUs (booting, tearing down) there is nobody to type to: dropped.
        daemon.console_write(text.encode("utf-8", "surrogateescape"), shard)


def _console_text(line: bytes) -> str:
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("input"), str):
        raise ControlError('malformed console input: expected {"input": "<text>"} lines')
    text: str = message["input"]
    return text
