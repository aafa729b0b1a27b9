"""`nixvmctl watch`: a live one-screen view of the daemon, redrawn as its events arrive."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from nixvmd.ctl.client import Client
from nixvmd.ctl.format import failures_of, failures_of_summary, format_watch
from nixvmd.errors import ControlError

# Redraw at least this often, so the clock and the run's elapsed time move.
TICK_S = 1.0
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
WATCHED_EVENTS = ["state", "run", "test", "kernel", "config"]


class Snapshot:
    """The daemon's status plus the failures of its last run, with their headlines.

    The status's `last_run.failures` has them; a daemon whose status lacks them is asked
    for the run's results once per run.

    Each refresh is a connection of its own: between refreshes (minutes, when nothing
    changes) a held one would be closed by the daemon as idle.
    """

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._failures_of: str | None = None
        self.failures: list[str] = []
        self.status: dict[str, Any] = {}

    def refresh(self) -> None:
        with Client(self.socket) as client:
            self.status = client.call("status")
            last = self.status.get("last_run")
            if last is None or last["id"] == self._failures_of:
                return
            self._failures_of = last["id"]
            self.failures = []
            if "failures" in last:
                self.failures = failures_of_summary(last)
            elif last["outcome"] != "passed" or last.get("failed"):
                try:
                    self.failures = failures_of(client.call("results", run_id=last["id"]))
                except ControlError:
                    self.failures = []

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "failures": self.failures}


def frame(snapshot: Snapshot, width: int) -> str:
    """The screen as one write: each line cleared to its end, the rest of the screen cleared."""
    lines = format_watch(snapshot.status, snapshot.failures, time.time(), width)
    return HOME + "".join(f"{line}{CLEAR_LINE}\n" for line in lines) + CLEAR_BELOW


def watch(socket: Path, *, once: bool, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Show the view until Ctrl-C (or once); 0 on Ctrl-C, 2 when the daemon goes away."""
    snapshot = Snapshot(socket)
    snapshot.refresh()
    if once:
        if as_json:
            print(json.dumps(snapshot.to_json(), indent=2), file=out)
        else:
            width = shutil.get_terminal_size().columns
            print("\n".join(format_watch(snapshot.status, snapshot.failures, time.time(), width)), file=out)
        return 0
    with Client(socket) as events:
        stream = events.open_stream("subscribe", events=WATCHED_EVENTS, limit=100)
        if not as_json:
            out.write(HIDE_CURSOR + HOME + CLEAR_BELOW)
        try:
            changed = True
            while True:
                if as_json:
                    # JSON lines, one snapshot per change, for scripts that follow along.
                    if changed:
                        print(json.dumps(snapshot.to_json()), file=out)
                else:
                    out.write(frame(snapshot, shutil.get_terminal_size().columns))
                out.flush()
                deadline = time.monotonic() + TICK_S
                changed = False
                # A burst of events is one redraw.
                while stream.read(max(0.0, deadline - time.monotonic())) is not None:
                    changed = True
                if changed or not as_json:
                    snapshot.refresh()
        except KeyboardInterrupt:
            return 0
        except ControlError as exc:
            print(f"nixvmctl: the daemon went away: {exc}", file=sys.stderr)
            return 2
        finally:
            if not as_json:
                out.write(SHOW_CURSOR)
                out.flush()
