"""`nixvmctl ssh [--shard N] [-- CMD]`: ssh into the running guest, as the user's own ssh process.

The daemon's status has the guest's ssh access (`current.ssh`, or a shard's): the command
line with nixvmd's key and the forwarded port. While the VM boots, its sshd is not up yet:
nixvmctl waits for the daemon's `ssh` event that says it is (or why it will not be), up
to SSH_WAIT_S, then execs ssh, so the terminal and the exit status are ssh's.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixvmd.ctl.client import Client, Stream
from nixvmd.errors import ControlError

SSH_WAIT_S = 60.0
NO_RUN = "no run is going on; nixvmctl ssh reaches the guest of a running run"
NO_NETWORK = 'the guest has no network (vm.network = "none"); set vm.network = "user" for ssh'


@dataclass(frozen=True)
class Verdict:
    """What status says about ssh into the guest: the command line, a reason there is none, or wait."""

    argv: tuple[str, ...] = ()
    refusal: str | None = None

    @property
    def waiting(self) -> bool:
        return not self.argv and self.refusal is None


def access_of(current: dict[str, Any] | None, shard: int | None) -> tuple[dict[str, Any] | None, str | None]:
    """The ssh object of the run's VM (`shard`'s in a run with shards; shard 0 without one), or why none."""
    if current is None:
        return None, NO_RUN
    shards = current.get("shards")
    if shards:
        index = 0 if shard is None else shard
        if not 0 <= index < len(shards):
            return None, f"run {current.get('run_id')} has shards 0 to {len(shards) - 1}, not {index}"
        holder = shards[index]
    elif shard not in (None, 0):
        return None, f"run {current.get('run_id')} has no shards; leave out --shard"
    else:
        holder = current
    access = holder.get("ssh")
    return (access, None) if isinstance(access, dict) else (None, NO_NETWORK)


def verdict(current: dict[str, Any] | None, shard: int | None) -> Verdict:
    """Whether `nixvmctl ssh` can go now, from status's `current`."""
    access, refusal = access_of(current, shard)
    if access is None:
        return Verdict(refusal=refusal)
    if access.get("error"):
        return Verdict(refusal=f"no ssh into the guest: {access['error']}")
    if access.get("ready") and access.get("command"):
        return Verdict(argv=tuple(shlex.split(str(access["command"]))))
    return Verdict()


def connect(socket: Path, shard: int | None, command: Sequence[str], timeout: float) -> int:
    """Exec ssh into the guest with `command` (none: a login shell); ControlError saying why not."""
    # Subscribed before status is read, so news between the two is not missed.
    stream = Client(socket, timeout=timeout).open_stream("subscribe", events=["ssh", "run"])
    try:
        with Client(socket, timeout=timeout) as client:
            current = client.call("status").get("current")
        found = verdict(current, shard)
        if found.waiting and current is not None:
            found = _wait(stream, current, shard)
    finally:
        stream.sock.close()
    if found.refusal is not None:
        raise ControlError(found.refusal)
    argv = [*found.argv, *command]
    os.execvp(argv[0], argv)


def _wait(stream: Stream, current: dict[str, Any], shard: int | None) -> Verdict:
    """Follow the run's `ssh` events until its guest's sshd is up or cannot be, or SSH_WAIT_S pass."""
    run_id = current.get("run_id")
    deadline = time.monotonic() + SSH_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        event = stream.read(left)
        if event is None or event.get("run_id") != run_id:
            continue
        if event.get("event") == "run" and event.get("phase") == "end":
            return Verdict(refusal=f"run {run_id} ended before its guest's sshd was up")
        if event.get("event") == "ssh" and event.get("shard") == _shard_key(current, shard):
            _merge(current, shard, event)
            found = verdict(current, shard)
            if not found.waiting:
                return found
    return Verdict(refusal=f"the guest's sshd was not up within {SSH_WAIT_S:g} s (nixvmctl status --json)")


def _shard_key(current: dict[str, Any], shard: int | None) -> int | None:
    """The `shard` field the events of the VM asked for carry (None: a run without shards)."""
    return (shard or 0) if current.get("shards") else None


def _merge(current: dict[str, Any], shard: int | None, event: dict[str, Any]) -> None:
    holder = current["shards"][shard or 0] if current.get("shards") else current
    news = {k: v for k, v in event.items() if k not in ("event", "seq", "run_id", "shard", "time")}
    holder["ssh"] = {**holder.get("ssh", {}), **news}
