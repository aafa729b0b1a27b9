"""Benchmark of the idle daemon: CPU time, RSS and wake-ups over a quiet window (default 60 s).

Starts `nixvmd --config <tmp config>` (the same config as bench_loop.py) and, once it said
READY=1 on a datagram socket standing in for systemd's, samples /proc/<pid>/stat
(utime + stime), /proc/<pid>/status (VmRSS, VmHWM) and every thread's context switches
(/proc/<pid>/task/*/status) at the start and the end of the window. Context switches of
an idle thread are its wake-ups. Scenarios:

- fresh: no kernel image in the tree, so the daemon has nothing to do; no WATCHDOG_USEC.
- fresh+watchdog: the same with WATCHDOG_USEC=20000000 (20 s): systemd's watchdog wants a
  ping every 10 s, so about 6 WATCHDOG=1 a minute are expected and nothing else.
- after-run: one complete run first (kernel written, run ended), then the window.

Run: python bench/bench_idle.py [--window SECONDS] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_loop import KERNEL_ROOT, EventStream, loadavg, running_daemon, write_in_place

SCENARIOS = ("fresh", "fresh+watchdog", "after-run")
WATCHDOG_USEC = "20000000"
TARGET_RSS_MB = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """What /proc says about the daemon at one moment."""

    cpu_s: float
    rss_kb: int
    hwm_kb: int
    switches: dict[str, tuple[str, int, int]]  # tid -> (comm, voluntary, involuntary)
    children: int


def _status_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def sample(pid: int) -> Sample:
    """utime + stime, VmRSS, VmHWM and per-thread context switches of `pid`."""
    proc = Path(f"/proc/{pid}")
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    status = (proc / "status").read_text()
    switches = {}
    for task in (proc / "task").iterdir():
        try:
            text = (task / "status").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        switches[task.name] = (
            comm,
            _status_field(text, "voluntary_ctxt_switches"),
            _status_field(text, "nonvoluntary_ctxt_switches"),
        )
    children = sum(len((t / "children").read_text().split()) for t in (proc / "task").iterdir())
    return Sample(cpu, _status_field(status, "VmRSS"), _status_field(status, "VmHWM"), switches, children)


@dataclass(frozen=True)
class Result:
    scenario: str
    window: float
    start: Sample
    end: Sample
    watchdog_pings: int
    other_notify: list[str]

    def per_minute(self, count: int) -> float:
        return count * 60 / self.window

    def thread_rows(self) -> list[str]:
        rows = []
        for tid in sorted(self.start.switches.keys() | self.end.switches.keys(), key=int):
            comm, v0, n0 = self.start.switches.get(tid, ("?", 0, 0))
            comm, v1, n1 = self.end.switches.get(tid, (comm, v0, n0))
            where = "" if tid in self.start.switches and tid in self.end.switches else " (came or went)"
            rows.append(
                f"| {self.scenario} | {tid} {comm}{where} | {self.per_minute(v1 - v0):.1f} | "
                f"{self.per_minute(n1 - n0):.1f} |"
            )
        return rows


def measure(scenario: str, window: float) -> Result:
    """Start a daemon for `scenario`, let it idle for `window` seconds, stop it."""
    env = {"WATCHDOG_USEC": WATCHDOG_USEC} if scenario == "fresh+watchdog" else {}
    with running_daemon("true", env) as (daemon, image):
        assert daemon.notify is not None
        if scenario == "after-run":
            events = EventStream(daemon.socket)
            try:
                write_in_place(image, (KERNEL_ROOT / "vmlinuz").read_bytes())
                run_id = events.wait_for("run", 60, phase="start")["run_id"]
                events.wait_for("run", 300, phase="end", run_id=run_id)
            finally:
                events.close()
        daemon.notify.drain()
        seen = len(daemon.notify.messages)
        start = sample(daemon.pid)
        t0 = time.monotonic()
        daemon.notify.receive_until(t0 + window)
        end = sample(daemon.pid)
        elapsed = time.monotonic() - t0
        texts = [text for _, text in daemon.notify.messages[seen:]]
    pings = sum("WATCHDOG=1" in t.split("\n") for t in texts)
    others = [t for t in texts if "WATCHDOG=1" not in t.split("\n")]
    return Result(scenario, elapsed, start, end, pings, others)


def report(results: list[Result]) -> str:
    lines = [
        "| scenario | window s | CPU ms (utime+stime) | CPU % | VmRSS start → end MB | VmHWM MB | "
        "WATCHDOG=1 /min | other notify msgs | children |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu_ms = (r.end.cpu_s - r.start.cpu_s) * 1000
        lines.append(
            f"| {r.scenario} | {r.window:.1f} | {cpu_ms:.0f} | {cpu_ms / 10 / r.window:.3f} | "
            f"{r.start.rss_kb / 1024:.1f} → {r.end.rss_kb / 1024:.1f} | {r.end.hwm_kb / 1024:.1f} | "
            f"{r.per_minute(r.watchdog_pings):.1f} | {len(r.other_notify)} | {r.end.children} |"
        )
    lines += ["", "| scenario | thread | voluntary switches /min | involuntary /min |", "|---|---|---|---|"]
    for r in results:
        lines += r.thread_rows()
    worst_rss = max(r.end.rss_kb for r in results) / 1024
    lines += [
        "",
        f"Idle RSS target (≤ {TARGET_RSS_MB:.0f} MB): {'met' if worst_rss <= TARGET_RSS_MB else 'NOT met'} "
        f"(largest {worst_rss:.1f} MB).",
    ]
    for r in results:
        if r.other_notify:
            lines.append(f"{r.scenario}: other notify messages: {r.other_notify!r}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    load_before = loadavg()
    results = []
    for scenario in args.scenario or SCENARIOS:
        results.append(measure(scenario, args.window))
        print(f"{scenario}: done", file=sys.stderr)
    print(report(results))
    print(f"\nLoad average before / after: {load_before} / {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
