"""The daemon's replies to commands (stop, pause, run, baseline...) in words; --json keeps them raw.

Each function takes the reply as the daemon (or the state dir) gave it and tolerates keys a
daemon of another version may not send.
"""

from __future__ import annotations

from typing import Any


def format_run(reply: dict[str, Any]) -> str:
    """`run requested: new run with 6.1.0-13-cloud-amd64 (tests: generic/001)`."""
    tests = reply.get("tests") or []
    only = f" (tests: {', '.join(tests)})" if tests else ""
    if reply.get("fresh"):
        only += ", fresh: no result Nix built before is reused"
    if reply.get("gdb") == "wait":
        only += ", under gdb: the guest waits at its first instruction; nixvmctl gdb prints the command"
    elif reply.get("gdb"):
        only += ", with a gdbstub: nixvmctl gdb prints the command"
    if reply.get("starts"):
        kernel = reply.get("kernel_version") or "the current kernel"
        cancels = "; the run in progress is cancelled" if reply.get("cancels") else ""
        return f"run requested: new run with {kernel}{only}{cancels}"
    # Not started now (an image build first, say): the plan says what happens instead.
    return f"{reply.get('plan') or 'run requested'}{only}"


def format_stop(reply: dict[str, Any]) -> str:
    if not reply.get("cancelled"):
        return "nothing was running"
    run_id = reply.get("run_id")
    return f"cancelled run {run_id}" if run_id else "cancelled the run in progress"


def format_pause(_: dict[str, Any]) -> str:
    return "paused: changes are noted, nothing starts until nixvmctl resume"


def format_resume(reply: dict[str, Any]) -> str:
    plan = reply.get("plan")
    return f"resumed; changes made while paused: {plan}" if plan else "resumed; nothing changed while paused"


def format_reload(_: dict[str, Any]) -> str:
    return "config reloaded"


REPLIES = {
    "run": format_run,
    "stop": format_stop,
    "pause": format_pause,
    "resume": format_resume,
    "reload": format_reload,
}


def format_reply(cmd: str, reply: dict[str, Any]) -> str:
    """A command's reply in words."""
    return REPLIES[cmd](reply)


def format_baseline(action: str, reply: dict[str, Any]) -> str:
    """The answer to `nixvmctl baseline list|accept|remove` in words."""
    path = reply.get("baseline", "the baseline")
    if action == "accept":
        names = ", ".join(reply.get("accepted") or []) or "no new failures"
        said = [f"{path}: accepted from run {reply.get('run_id')}: {names}"]
        if reply.get("already_known"):
            said.append(f"already known: {', '.join(reply['already_known'])}")
        if reply.get("left_out"):
            said.append(
                f"not written: {', '.join(map(repr, reply['left_out']))} (the file cannot name a test"
                " with a double quote or a line break; add a glob with '?' in its place by hand)"
            )
        return "\n".join(said)
    if action == "remove":
        return f"{path}: removed {', '.join(reply.get('removed') or [])}"
    entries = reply.get("entries") or []
    if not entries:
        return f"no known failures ({path}); nixvmctl baseline accept adds a run's failures"
    width = min(40, max(len(e["test"]) for e in entries))
    lines = [f"{path}: {len(entries)} known failure{'s' if len(entries) != 1 else ''}"]
    for entry in entries:
        when = f"  [{', '.join(entry['conditions'])}]" if entry.get("conditions") else ""
        comment = f"  # {entry['comment']}" if entry.get("comment") else ""
        lines.append(f"  {entry['test']:<{width}}{when}{comment}".rstrip())
    return "\n".join(lines)
