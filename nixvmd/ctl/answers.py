"""Questions about runs and the baseline: asked of the daemon, or of the state dir when none runs.

`history`, `results`, `logs RUN` and `baseline` need nothing the daemon alone knows: every
run's record is on disk. When no daemon listens (no socket, or the connection is refused),
nixvmctl answers them itself with the daemon's own functions (results/queries.py,
results/known.py), so the answers are the same objects either way; writes to the baseline
take the lock the daemon takes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from nixvmd.config.load import find_config_file, load_config
from nixvmd.config.schema import Config
from nixvmd.ctl.client import Client, NoDaemonError
from nixvmd.ctl.dump import format_dumps
from nixvmd.ctl.format import format_history, format_results
from nixvmd.ctl.replies import format_baseline
from nixvmd.errors import ConfigError, NixvmdError
from nixvmd.results import known, queries
from nixvmd.results.dump_query import run_dumps
from nixvmd.results.store import RunStore

# The commands that can be answered from the state dir.
COMMANDS = ("history", "results", "logs", "baseline", "dump")
BASELINE_USAGE = "usage: nixvmctl baseline list | accept [RUN] | remove TEST..."


class Answers(Protocol):
    """Where the answers come from: the daemon or the state dir."""

    def history(self, limit: int) -> list[dict[str, Any]]: ...
    def results(self, run_id: str | None) -> dict[str, Any]: ...
    def run_console(self, run_id: str) -> dict[str, Any]: ...
    def baseline(self, action: str, args: argparse.Namespace) -> dict[str, Any]: ...
    def dump(self, run_id: str | None) -> dict[str, Any]: ...


class DaemonAnswers:
    """The running daemon answers, over its control socket."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def history(self, limit: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.call("history", limit=limit)
        return result

    def results(self, run_id: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("results", run_id=run_id)
        return result

    def run_console(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("logs", run_id=run_id)
        return result

    def dump(self, run_id: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("dump", run_id=run_id)
        return result

    def baseline(self, action: str, args: argparse.Namespace) -> dict[str, Any]:
        if action == "accept":
            result: dict[str, Any] = self.client.call("baseline-accept", run_id=args.run_id)
        elif action == "remove":
            result = self.client.call("baseline-remove", tests=args.tests)
        else:
            result = self.client.call("baseline-list")
        return result


class StateDirAnswers:
    """No daemon runs: the state dir of the config answers, read (and the baseline written) here."""

    def __init__(self, config: Config, wait_s: float, on_wait: Callable[[str], None]) -> None:
        self.config = config
        self.store = RunStore(config.daemon.state_dir)
        self.wait_s = wait_s
        self.on_wait = on_wait

    def history(self, limit: int) -> list[dict[str, Any]]:
        return queries.run_history(self.store, limit)

    def results(self, run_id: str | None) -> dict[str, Any]:
        return queries.run_results(self.store, run_id)

    def run_console(self, run_id: str) -> dict[str, Any]:
        return queries.run_console(self.store, run_id)

    def dump(self, run_id: str | None) -> dict[str, Any]:
        return run_dumps(self.store, run_id, self.config.kernel.tree)

    def baseline(self, action: str, args: argparse.Namespace) -> dict[str, Any]:
        if action == "accept":
            return known.accept_failures(
                self.store, self.config, args.run_id, wait_s=self.wait_s, on_wait=self.on_wait
            )
        if action == "remove":
            return known.remove_known(self.config, args.tests, wait_s=self.wait_s, on_wait=self.on_wait)
        return known.list_known(self.config)


def _say(message: str) -> None:
    print(f"nixvmctl: {message}", file=sys.stderr, flush=True)


def load_ctl_config(path: Path | None) -> Config:
    """The config nixvmd would use from here (or `path`); NixvmdError when it cannot be read."""
    try:
        return load_config(path or find_config_file())
    except ConfigError as exc:
        raise NixvmdError(
            f"nixvmd is not running, and its config cannot be read to find its state dir:\n{exc}"
        ) from None


@contextmanager
def answers_for(args: argparse.Namespace, socket: Path) -> Iterator[Answers]:
    """The daemon's answers when one listens on `socket`; else the state dir's, said on stderr."""
    try:
        client = Client(socket, timeout=args.timeout)
    except NoDaemonError:
        config = load_ctl_config(args.config_file)
        _say(f"nixvmd is not running; reading {config.daemon.state_dir} directly")
        yield StateDirAnswers(config, args.timeout, _say)
        return
    with client:
        yield DaemonAnswers(client)


def answer(args: argparse.Namespace, answers: Answers) -> int:
    """Print the answer to `args.command` (one of COMMANDS, not plain `logs`); the exit status."""
    as_json = getattr(args, "json", False)
    cmd = args.command
    if cmd == "history":
        runs = answers.history(args.limit)
        print(json.dumps(runs, indent=2) if as_json else format_history(runs))
    elif cmd == "results":
        result = answers.results(args.run_id)
        print(json.dumps(result, indent=2) if as_json else format_results(result))
    elif cmd == "logs":
        return show_console(answers.run_console(args.run_id), args.lines, as_json)
    elif cmd == "dump":
        result = answers.dump(args.run_id)
        print(json.dumps(result, indent=2) if as_json else format_dumps(result))
    else:
        result = answers.baseline(args.baseline_command, args)
        print(json.dumps(result) if as_json else format_baseline(args.baseline_command, result))
    return 0


def show_console(where: dict[str, Any], lines: int | None, as_json: bool) -> int:
    """Print a run's console.log (its last `lines` lines when given), as it was captured."""
    try:
        data = Path(where["path"]).read_bytes()
    except OSError as exc:
        raise NixvmdError(f"cannot read {where['path']}: {exc.strerror}") from None
    if lines is not None:
        data = b"".join(data.splitlines(keepends=True)[-lines:] if lines > 0 else [])
    if as_json:
        text = data.decode("utf-8", "replace").splitlines()
        print(json.dumps({**where, "lines": text}))
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0
