"""How nixvmctl shows the daemon's answers to a person (--json shows them as they are).

A failed test is shown as ``name: headline``, the headline being the first line of its
message (results/record.py); `results` adds the message's other lines below it.
"""

from __future__ import annotations

import datetime
from typing import Any

from nixvmd.config.units import format_size

FAILURES_SHOWN = 5
STATUS_MARKS = {
    "pass": "ok  ",
    "fail": "FAIL",
    "skip": "skip",
    "error": "ERR ",
    "crashed": "CRSH",
    "timeout": "HUNG",
}
FAILING_STATUSES = ("fail", "error", "crashed", "timeout")
DETAIL_LINES = 10


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
    if s.get("space_error"):
        lines.append(f"disk:     {s['space_error']}")
    img = s.get("image") or {}
    lines.append(f"image:    {img.get('backend')} {img.get('path') or ''}".rstrip())
    cfg = s.get("config") or {}
    if cfg.get("error"):
        lines.append(f"config:   reload failed, old config in force:\n          {cfg['error']}")
    cur = s.get("current")
    if cur:
        total, done = cur.get("total"), cur.get("done") or 0
        test = f" {cur['test']}" if cur.get("test") else ""
        progress = f" {done}/{total}" if total else (f" {done} done" if done or test else "")
        lines.append(f"current:  {cur['run_id']} {cur.get('phase', '')}{test}{progress}{_eta(cur)}")
        lines += _why(cur)
        lines += [f"          {line}" for line in shard_lines(cur)]
        lines += _ssh(cur)
        lines += _first_regression(cur)
        if isinstance(cur.get("gdb"), dict):
            lines.append(f"gdb:      {cur['gdb'].get('command')}")
    if (bisect := s.get("bisect")) is not None:
        lines.append(f"bisect:   {bisect_line(bisect)}")
    if (waiting := s.get("queued")) is not None:
        lines.append(f"queued:   after this run: {waiting['reason']}")
    last = s.get("last_run")
    if last:
        lines += _last_run(last, f"{last['id']} ")
        if last.get("fixes"):
            lines.append(f"          fixed: {', '.join(last['fixes'])}")
        if last.get("known_failures"):
            lines.append(f"          known failures: {', '.join(last['known_failures'])}")
        failures = failures_of_summary(last)
        if failures:
            lines.append("failures:")
            lines += [f"  {line}" for line in failures]
    else:
        lines.append("last run: (none yet)")
    return "\n".join(lines)


def _ssh(current: dict[str, Any]) -> list[str]:
    """The `ssh:` line of a run whose guest is on the user-mode network: its port, and whether sshd is up."""
    access = current.get("ssh")
    if not access:
        return []
    if access.get("error"):
        return [f"ssh:      none: {access['error']}"]
    where = f"{access.get('host')}:{access['port']}" if access.get("port") else "port not known yet"
    ready = "nixvmctl ssh" if access.get("ready") else "waiting for the guest's sshd"
    return [f"ssh:      {ready} ({where})"]


def bisect_line(bisect: dict[str, Any]) -> str:
    """Status's `bisect` in one line: where it is, or how it ended."""
    if bisect["state"] != "running":
        return f"{bisect['id']} {bisect['state']}: {bisect['reason']}"
    current = bisect.get("current") or {}
    left = "" if bisect.get("steps_left") is None else f", about {bisect['steps_left']} left"
    doing = f", {current['phase']} {current['commit'][:12]}" if current else ""
    return f"{bisect['id']} step {bisect['step']}{left}{doing}"


def _eta(current: dict[str, Any]) -> str:
    """`, ~40s left` when the run knows its ETA (a run with shards: its slowest shard's)."""
    eta = current.get("eta_s")
    return f", ~{eta:.0f}s left" if isinstance(eta, int | float) and current.get("shards") else ""


def shard_lines(current: dict[str, Any], bar: int = 0) -> list[str]:
    """One line per shard of the running run: `shard 1: testing generic/002 1/4` (`bar`: a progress bar)."""
    lines = []
    for shard in current.get("shards") or ():
        done, total = shard.get("done") or 0, shard.get("total")
        count = progress_bar(done, total, bar) if bar else (f"{done}/{total}" if total else f"{done} done")
        test = f" {shard['test']}" if shard.get("test") else ""
        lines.append(f"shard {shard['index']}: {shard.get('state') or '?'}{test} {count}")
    return lines


def _why(current: dict[str, Any]) -> list[str]:
    """Why the running run started: `          why: tests/generic/750.out changed → generic/750`."""
    return [f"          why: {current['reason']}"] if current.get("reason") else []


def _first_regression(current: dict[str, Any]) -> list[str]:
    """The running run's first regression, when one was seen: `first regression: name: headline`."""
    found = current.get("first_regression")
    if not found:
        return []
    return [f"          first regression: {failure_line(found['test'], found.get('headline') or '')}"]


def _last_run(last: dict[str, Any], prefix: str = "") -> list[str]:
    """The `last run:` line of status and watch (`prefix`: before the outcome), its reason and regressions."""
    lines = [
        f"last run: {prefix}{last['outcome']} on {last.get('build') or last['kernel_version']}: "
        f"{last['passed']} passed, {last['failed']} failed, {last['skipped']} skipped "
        f"in {last['duration_s']:.1f}s"
    ]
    if last.get("reason"):
        lines.append(f"          {last['reason']}")
    if last.get("regressions"):
        lines.append(f"          regressions: {', '.join(last['regressions'])}")
    lines += vmcore_lines(last, "          ")
    return lines


def vmcore_lines(run: dict[str, Any], indent: str) -> list[str]:
    """`vmcore: PATH (SIZE); nixvmctl dump RUN` when the run has one, else why a crash has none."""
    vmcore = run.get("vmcore")
    if vmcore:
        size = format_size(int(vmcore.get("size") or 0))
        return [f"{indent}vmcore: {vmcore['path']} ({size}); nixvmctl dump {run['id']} opens it"]
    if run.get("vmcore_note"):
        return [f"{indent}{run['vmcore_note']}"]
    return []


def format_results(r: dict[str, Any]) -> str:
    lines = [
        f"run {r['id']}: {r['outcome']} on {r.get('build') or r['kernel_version']} ({r['duration_s']:.1f}s)"
    ]
    known_failures = set(r.get("known_failures") or ())
    if r.get("reason"):
        lines.append(f"  {r['reason']}")
    lines += vmcore_lines(r, "  ")
    for test in r.get("tests", []):
        mark = STATUS_MARKS.get(test["status"], "?   ")
        duration = f" {test['duration_s']:.1f}s" if test.get("duration_s") is not None else ""
        known = " (known failure)" if test["name"] in known_failures else ""
        lines.append(f"  {mark} {test['name']}{duration}{known}")
        if test["status"] in FAILING_STATUSES and test.get("message"):
            headline, *details = test["message"].strip().splitlines()
            lines.append(f"         {headline.strip()}")
            lines += [f"           {m}" for m in details[:DETAIL_LINES]]
    for name in ("regressions", "fixes"):
        if r.get(name):
            lines.append(f"  {name}: {', '.join(r[name])}")
    return "\n".join(lines)


def format_history(runs: list[dict[str, Any]]) -> str:
    """A header, then one line per run: id, start, outcome, build, counts, duration, what was special."""
    if not runs:
        return "no runs yet"
    builds = [r.get("build") or r.get("kernel_version") or "?" for r in runs]
    width = max(12, min(40, max(len(b) for b in builds)))
    out = [
        f"{'RUN':<19}  {'STARTED':<19}  {'OUTCOME':<9}  {'BUILD':<{width}}  PASS  FAIL  SKIP     TIME  NOTES"
    ]
    for r, build in zip(runs, builds, strict=True):
        took = f"{r['duration_s']:.1f}s" if r.get("duration_s") else "-"
        out.append(
            f"{r['id']:<19}  {_when(r.get('started_at')):<19}  {r.get('outcome') or '?':<9}  "
            f"{build:<{width}}  {r.get('passed', 0):>4}  {r.get('failed', 0):>4}  {r.get('skipped', 0):>4}  "
            f"{took:>7}  {_notes(r)}".rstrip()
        )
    return "\n".join(out)


def _notes(run: dict[str, Any]) -> str:
    notes = []
    if run.get("narrowed_to"):
        notes.append(f"narrowed to {_some(run['narrowed_to'])}")
    if run.get("vmcore"):
        notes.append("vmcore")
    for key, name in (("regressions", "regressions"), ("fixes", "fixed"), ("flaky", "flaky")):
        if run.get(key):
            notes.append(f"{name}: {_some(run[key])}")
    return "; ".join(notes)


def _some(names: list[str], at_most: int = 4) -> str:
    """`a, b, c` or `a, b, c, d +3 more`: a history line stays a line."""
    more = f" +{len(names) - at_most} more" if len(names) > at_most else ""
    return ", ".join(names[:at_most]) + more


def followed_line(event: dict[str, Any]) -> str | None:
    """How `nixvmctl logs -f` shows an event (None: not at all); a shard's console lines say which shard."""
    kind = event["event"]
    if kind == "log":
        return str(event["line"])
    if kind == "console":
        shard = f"[shard {event['shard']}] " if event.get("shard") is not None else ""
        return f"console| {shard}{event['line']}"
    if kind == "dropped":
        return f"(dropped {event['count']} events)"
    if kind == "run" and event.get("phase") == "end":
        return f"run {event['run_id']} ended: {event.get('outcome')}"
    return None


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    """`[#########.....................] 3/10`; without a total, just the count so far."""
    if not total:
        return f"[{'?' * min(width, 1):<{width}}] {done} done"
    filled = min(width, round(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def failure_line(name: str, headline: str) -> str:
    """`name: headline`, or the name alone when the test said nothing."""
    return f"{name}: {headline}" if headline else name


def failures_of(results: dict[str, Any], at_most: int = FAILURES_SHOWN) -> list[str]:
    """One line per failed or errored test of a run's results: `name: headline`."""
    out = []
    for test in results.get("tests", []):
        if test.get("status") in FAILING_STATUSES:
            message = (test.get("message") or "").strip().splitlines()
            out.append(failure_line(test["name"], message[0].strip() if message else ""))
    if len(out) > at_most:
        out = [*out[:at_most], f"... and {len(out) - at_most} more"]
    return out


def failures_of_summary(run: dict[str, Any], at_most: int = FAILURES_SHOWN) -> list[str]:
    """`name: headline` lines from a run summary's `failures` (status `last_run`, history)."""
    failures = run.get("failures") or []
    out = [failure_line(f["name"], f.get("headline") or "") for f in failures[:at_most]]
    more = max(int(run.get("failed") or 0), len(failures)) - len(out)
    return [*out, f"... and {more} more"] if out and more > 0 else out


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
    if status.get("space_error"):
        lines.append(f"disk:     {status['space_error']}")
    cur = status.get("current")
    if cur:
        elapsed = now - cur["started_at"] if cur.get("started_at") else None
        took = f" ({elapsed:.0f}s)" if elapsed is not None else ""
        lines.append(f"run:      {cur['run_id']} {cur.get('phase') or ''}{took}{_eta(cur)}".rstrip())
        lines += _why(cur)
        test = f"  {cur['test']}" if cur.get("test") else ""
        lines.append(
            f"tests:    {progress_bar(cur.get('done') or 0, cur.get('total'), min(40, width - 30))}{test}"
        )
        lines += [f"  {line}" for line in shard_lines(cur, min(20, width - 50))]
        lines += _first_regression(cur)
    else:
        lines.append("run:      (nothing running)")
    last = status.get("last_run")
    if last:
        lines += _last_run(last)
        if failures:
            lines.append("failures:")
            lines += [f"  {line}" for line in failures]
    else:
        lines.append("last run: (none yet)")
    return [line[:width] for line in lines]
