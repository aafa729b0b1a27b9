"""`nixvmctl bisect`: start a bisect in the daemon, follow it, stop it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nixvmd.ctl.client import Client
from nixvmd.ctl.completion import complete_with
from nixvmd.errors import NixvmdError

USAGE = "bisect needs --good REV (to start one), --status or --stop"


def add_parser(sub: Any) -> None:
    """The `bisect` subcommand of nixvmctl's parser."""
    p = sub.add_parser(
        "bisect", help="find the commit that broke tests: git bisect, built and run by the daemon"
    )
    p.add_argument("--good", metavar="REV", help="a commit where the tests pass: start a bisect")
    p.add_argument("--bad", metavar="REV", help="a commit where they fail (default: the tree's HEAD)")
    complete_with(
        p.add_argument(
            "--tests",
            nargs="+",
            metavar="TEST",
            default=[],
            help="what decides (default: the latest run's regressions)",
        ),
        "tests",
    )
    p.add_argument("--status", action="store_true", help="the bisect going on, or the last one, step by step")
    p.add_argument("--stop", action="store_true", help="end the bisect going on")
    p.add_argument("--json", action="store_true")


def command(client: Client, args: argparse.Namespace) -> int:
    """Carry out `nixvmctl bisect ...` with the daemon."""
    if sum((args.good is not None, args.status, args.stop)) != 1:
        raise NixvmdError(USAGE)
    if args.good is not None:
        result = client.call("bisect", action="start", good=args.good, bad=args.bad, tests=args.tests)
        text = started(result)
    elif args.stop:
        result = client.call("bisect", action="stop")
        text = f"stopped bisect {result['id']}" if result["stopped"] else "no bisect is going on"
    else:
        result = client.call("bisect", action="status")
        text = described(result)
    print(json.dumps(result) if args.json else text)
    return 0


def started(bisect: dict[str, Any]) -> str:
    tests = ", ".join(bisect["tests"]) or "the whole suite"
    return (
        f"bisect {bisect['id']} started: {bisect['good'][:12]} (good) .. {bisect['bad'][:12]} (bad), "
        f"judged by {tests}; nixvmctl bisect --status follows it"
    )


def described(bisect: dict[str, Any]) -> str:
    """A bisect's record in lines: its bounds, each step, its end."""
    left = "" if bisect.get("steps_left") is None else f", about {bisect['steps_left']} step(s) left"
    tests = ", ".join(bisect["tests"]) or "all"
    lines = [
        f"bisect {bisect['id']}: {bisect['state']}{left if bisect['state'] == 'running' else ''}",
        f"  good {bisect['good'][:12]}  bad {bisect['bad'][:12]}  tests: {tests}",
    ]
    for n, step in enumerate(bisect.get("steps", ()), 1):
        verdict = step["verdict"] or ("building" if not step["build"] else "testing")
        run = f" run {step['run_id']}" if step.get("run_id") else ""
        note = f": {step['note']}" if step.get("note") else ""
        lines.append(f"  {n}. {step['commit'][:12]} {verdict}{run} ({step['subject']}){note}")
    if bisect.get("first_bad"):
        lines.append(f"first bad commit: {bisect['first_bad']}")
    if bisect["state"] != "running" and bisect.get("reason"):
        lines.append(bisect["reason"])
    return "\n".join(lines)
