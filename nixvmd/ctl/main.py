"""`nixvmctl`: ask the daemon what is going on, or tell it what to do."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from nixvmd.config.load import find_config_file, load_config
from nixvmd.ctl.client import Client, default_socket
from nixvmd.errors import ConfigError, NixvmdError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nixvmctl", description="Control and query nixvmd.")
    parser.add_argument("--socket", type=Path, help="the daemon's control socket")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("status", help="what the daemon is doing, the kernel, the last result")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("logs", help="the daemon's log; -f follows it and the live console")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, default=50)
    p = sub.add_parser("run", help="start a run now with the current kernel")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("results", help="one run's tests (default: the latest run)")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("history", help="one line per run")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    for name, text in (
        ("pause", "stop reacting to changes (queries still work)"),
        ("resume", "react to changes again (runs once if something changed)"),
        ("stop", "cancel the current run"),
        ("reload", "read the config file again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("config", help="config file tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", help="validate a config file (default: the one nixvmd would use)")
    c.add_argument("file", nargs="?", type=Path)
    return parser.parse_args(argv)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def format_status(s: dict[str, Any]) -> str:
    lines = [f"state:    {s['state']}{' (paused)' if s.get('paused') and s['state'] != 'paused' else ''}"]
    k = s.get("kernel")
    lines.append(f"kernel:   {k['version'] if k else '(none)'}")
    if k:
        lines.append(f"          {k['path']} (built {_when(k.get('mtime'))})")
    if s.get("kernel_error"):
        lines.append(f"          refused: {s['kernel_error']}")
    img = s.get("image") or {}
    lines.append(f"image:    {img.get('backend')} {img.get('path') or ''}".rstrip())
    cfg = s.get("config") or {}
    if cfg.get("error"):
        lines.append(f"config:   reload failed, old config in force:\n          {cfg['error']}")
    cur = s.get("current")
    if cur:
        total = cur.get("total")
        progress = f" {cur.get('done', 0)}/{total}" if total else ""
        test = f" {cur['test']}" if cur.get("test") else ""
        lines.append(f"current:  {cur['run_id']} {cur.get('phase', '')}{test}{progress}")
    last = s.get("last_run")
    if last:
        lines.append(
            f"last run: {last['id']} {last['outcome']} on {last['kernel_version']}: "
            f"{last['passed']} passed, {last['failed']} failed, {last['skipped']} skipped "
            f"in {last['duration_s']:.1f}s"
        )
        if last.get("reason"):
            lines.append(f"          {last['reason']}")
        if last.get("regressions"):
            lines.append(f"          regressions: {', '.join(last['regressions'])}")
        if last.get("fixes"):
            lines.append(f"          fixed: {', '.join(last['fixes'])}")
    else:
        lines.append("last run: (none yet)")
    return "\n".join(lines)


def format_results(r: dict[str, Any]) -> str:
    lines = [f"run {r['id']}: {r['outcome']} on {r['kernel_version']} ({r['duration_s']:.1f}s)"]
    if r.get("reason"):
        lines.append(f"  {r['reason']}")
    for test in r.get("tests", []):
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip", "error": "ERR "}.get(test["status"], "?")
        duration = f" {test['duration_s']:.1f}s" if test.get("duration_s") is not None else ""
        lines.append(f"  {mark} {test['name']}{duration}")
        if test["status"] in ("fail", "error") and test.get("message"):
            lines += [f"         {m}" for m in test["message"].splitlines()[:10]]
    for name in ("regressions", "fixes"):
        if r.get(name):
            lines.append(f"  {name}: {', '.join(r[name])}")
    return "\n".join(lines)


def format_history(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs yet"
    out = []
    for r in runs:
        regs = f"  regressions: {', '.join(r['regressions'])}" if r.get("regressions") else ""
        out.append(
            f"{_when(r.get('started_at'))}  {r['id']}  {r['kernel_version']:<28} "
            f"{r['outcome']:<9} {r['passed']}/{r['failed']}/{r['skipped']}{regs}"
        )
    return "\n".join(out)


def follow(client: Client) -> int:
    try:
        for event in client.subscribe(["log", "console", "state", "run", "dropped"]):
            kind = event["event"]
            if kind == "log":
                print(event["line"], flush=True)
            elif kind == "console":
                print(f"console| {event['line']}", flush=True)
            elif kind == "dropped":
                print(f"(dropped {event['count']} events)", flush=True)
            elif kind == "run" and event.get("phase") == "end":
                print(f"run {event['run_id']} ended: {event.get('outcome')}", flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def config_check(path: Path | None) -> int:
    path = path or find_config_file()
    try:
        load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{path or '<built-in defaults>'}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "config":
        return config_check(args.file)
    try:
        with Client(args.socket or default_socket()) as client:
            cmd = args.command
            as_json = getattr(args, "json", False)
            if cmd == "logs":
                for line in client.call("logs", lines=args.lines)["lines"]:
                    print(line)
                return follow(client) if args.follow else 0
            if cmd == "results":
                result = client.call("results", run_id=args.run_id)
                print(json.dumps(result, indent=2) if as_json else format_results(result))
                return 0
            if cmd == "history":
                result = client.call("history", limit=args.limit)
                print(json.dumps(result, indent=2) if as_json else format_history(result))
                return 0
            result = client.call(cmd)
            if cmd == "status":
                print(json.dumps(result, indent=2) if as_json else format_status(result))
            elif as_json:
                print(json.dumps(result))
            else:
                print(" ".join(f"{k}: {v}" for k, v in result.items() if v is not None) or "ok")
            return 0
    except NixvmdError as exc:
        print(f"nixvmctl: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"nixvmctl: talking to the daemon failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
