"""How nixvmctl shows the daemon's answers to a person (--json shows them as they are)."""

from __future__ import annotations

import datetime
from typing import Any


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
            f"last run: {last['id']} {last['outcome']} on {last.get('build') or last['kernel_version']}: "
            f"{last['passed']} passed, {last['failed']} failed, {last['skipped']} skipped "
            f"in {last['duration_s']:.1f}s"
        )
        if last.get("reason"):
            lines.append(f"          {last['reason']}")
        if last.get("regressions"):
            lines.append(f"          regressions: {', '.join(last['regressions'])}")
        if last.get("fixes"):
            lines.append(f"          fixed: {', '.join(last['fixes'])}")
        if last.get("known_failures"):
            lines.append(f"          known failures: {', '.join(last['known_failures'])}")
    else:
        lines.append("last run: (none yet)")
    return "\n".join(lines)


def format_results(r: dict[str, Any]) -> str:
    lines = [
        f"run {r['id']}: {r['outcome']} on {r.get('build') or r['kernel_version']} ({r['duration_s']:.1f}s)"
    ]
    known_failures = set(r.get("known_failures") or ())
    if r.get("reason"):
        lines.append(f"  {r['reason']}")
    for test in r.get("tests", []):
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip", "error": "ERR "}.get(test["status"], "?")
        duration = f" {test['duration_s']:.1f}s" if test.get("duration_s") is not None else ""
        known = " (known failure)" if test["name"] in known_failures else ""
        lines.append(f"  {mark} {test['name']}{duration}{known}")
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


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    """`[#########.....................] 3/10`; without a total, just the count so far."""
    if not total:
        return f"[{'?' * min(width, 1):<{width}}] {done} done"
    filled = min(width, round(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def failures_of(results: dict[str, Any], at_most: int = 5) -> list[str]:
    """One line per failed or errored test of a run's results: `name: first message line`."""
    out = []
    for test in results.get("tests", []):
        if test.get("status") in ("fail", "error"):
            message = (test.get("message") or "").strip().splitlines()
            out.append(f"{test['name']}: {message[0]}" if message else test["name"])
    if len(out) > at_most:
        out = [*out[:at_most], f"... and {len(out) - at_most} more"]
    return out


def format_watch(status: dict[str, Any], failures: list[str], now: float, width: int = 80) -> list[str]:
    """One screen of `nixvmctl watch`: phase, kernel, the run's progress, the last failures."""
    state = status["state"]
    paused = " (paused)" if status.get("paused") and state != "paused" else ""
    clock = datetime.datetime.fromtimestamp(now).strftime("%H:%M:%S")
    head = f"nixvmd: {state}{paused}"
    lines = [f"{head}{clock:>{max(1, width - len(head))}}"]
    kernel = status.get("kernel")
    lines.append(f"kernel:   {kernel.get('release') or kernel['version'] if kernel else '(none yet)'}")
    if status.get("kernel_error"):
        lines.append(f"          refused: {status['kernel_error']}")
    cur = status.get("current")
    if cur:
        elapsed = now - cur["started_at"] if cur.get("started_at") else None
        took = f" ({elapsed:.0f}s)" if elapsed is not None else ""
        lines.append(f"run:      {cur['run_id']} {cur.get('phase') or ''}{took}".rstrip())
        test = f"  {cur['test']}" if cur.get("test") else ""
        lines.append(
            f"tests:    {progress_bar(cur.get('done') or 0, cur.get('total'), min(40, width - 30))}{test}"
        )
    else:
        lines.append("run:      (nothing running)")
    last = status.get("last_run")
    if last:
        lines.append(
            f"last run: {last['outcome']} on {last.get('build') or last['kernel_version']}: "
            f"{last['passed']} passed, "
            f"{last['failed']} failed, {last['skipped']} skipped in {last['duration_s']:.1f}s"
        )
        if last.get("reason"):
            lines.append(f"          {last['reason']}")
        if last.get("regressions"):
            lines.append(f"          regressions: {', '.join(last['regressions'])}")
        if failures:
            lines.append("failures:")
            lines += [f"  {line}" for line in failures]
    else:
        lines.append("last run: (none yet)")
    return [line[:width] for line in lines]
