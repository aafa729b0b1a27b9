"""Benchmark of the control socket under held-open connections: does `nixvmctl status` still answer?

Starts `nixvmd --config <tmp config>` (the same config as bench_loop.py, on an empty kernel
tree, so no VM boots) and, for each scenario, N times: opens the scenario's connections
(connected, silent: what a crowd of stuck clients looks like), then times

- `nixvmctl --socket S status --json` as a subprocess, from spawn to exit (Python start-up
  and imports included: what a person or a script waits for), checking it exited 0 with
  the daemon's status;
- a raw request: connect, send {"cmd": "status"}, read the reply line, from this process.

and closes the held connections again. Each sample gets a fresh crowd, because every answered
request closes the longest-idle held connection to make room. Scenarios:

- 0 held: the baseline.
- 300 held: 300 silent connections open (the daemon keeps 64, the newest, and closed the rest).
- 300 held, fds short: the same with the daemon's RLIMIT_NOFILE lowered (prlimit) to 8 above
  what it had open at start, so accepting runs into EMFILE and connections are closed to
  free fds.

Run: python bench/bench_connections.py [--samples N] [--held N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_loop import loadavg, running_daemon

TARGET_S = 1.0


def nixvmctl_argv(sock: Path) -> list[str]:
    """`nixvmctl --socket S status --json`, through the console script when it is on PATH."""
    exe = shutil.which("nixvmctl")
    base = [exe] if exe is not None else [sys.executable, "-m", "nixvmd.ctl.main"]
    return [*base, "--socket", str(sock), "status", "--json"]


def hold(sock: Path, count: int) -> list[socket.socket]:
    """`count` connected, silent connections (a full accept queue makes connect wait)."""
    held = []
    for _ in range(count):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(sock))
        held.append(conn)
    return held


def time_nixvmctl(sock: Path, pid: int) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(nixvmctl_argv(sock), capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0 or json.loads(done.stdout)["pid"] != pid:
        raise RuntimeError(f"nixvmctl status failed: {done.returncode} {done.stderr.strip()}")
    return elapsed


def time_raw(sock: Path, pid: int) -> float:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(sock))  # blocking: waits its turn in a full accept queue
        conn.settimeout(60)
        conn.sendall(b'{"cmd": "status"}\n')
        with conn.makefile("rb") as reader:
            line = reader.readline()
    elapsed = time.perf_counter() - t0
    reply = json.loads(line)
    if not reply.get("ok") or reply["result"]["pid"] != pid:
        raise RuntimeError(f"raw status failed: {reply}")
    return elapsed


@dataclass(frozen=True)
class Result:
    scenario: str
    ctl: list[float]
    raw: list[float]
    log_lines: int


def measure(scenario: str, sock: Path, pid: int, held: int, samples: int, log: Path) -> Result:
    """`samples` timings of each kind with `held` silent connections open around each one."""
    ctl: list[float] = []
    raw: list[float] = []
    timers: list[tuple[list[float], Callable[[Path, int], float]]] = [(ctl, time_nixvmctl), (raw, time_raw)]
    for _ in range(samples):
        for into, timer in timers:
            crowd = hold(sock, held)
            try:
                into.append(timer(sock, pid))
            finally:
                for conn in crowd:
                    conn.close()
    warnings = sum("out of file descriptors" in line for line in log.read_text().splitlines())
    return Result(scenario, ctl, raw, warnings)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def ms(values: list[float], how: Callable[[list[float]], float]) -> str:
    return f"{how(values) * 1000:.1f}"


def report(results: list[Result]) -> str:
    base = results[0]
    lines = [
        "| scenario | nixvmctl status --json median ms | max ms | ratio to 0 held (median) | "
        "raw request median ms | max ms | ratio to 0 held (median) | fd warnings in log |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ctl_ratio = statistics.median(r.ctl) / statistics.median(base.ctl)
        raw_ratio = statistics.median(r.raw) / statistics.median(base.raw)
        lines.append(
            f"| {r.scenario} | {ms(r.ctl, statistics.median)} | {ms(r.ctl, max)} | {ctl_ratio:.2f} | "
            f"{ms(r.raw, statistics.median)} | {ms(r.raw, max)} | {raw_ratio:.2f} | {r.log_lines} |"
        )
    worst = max(max(r.ctl) for r in results)
    lines += [
        "",
        f"Target (every `nixvmctl status` answers within {TARGET_S:g} s): "
        f"{'met' if worst <= TARGET_S else 'NOT met'} (slowest {worst * 1000:.0f} ms).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--held", type=int, default=300)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * args.held:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4 * args.held, hard), hard))
    load_before = loadavg()
    results = []
    with running_daemon("true") as (daemon, _image):
        log = daemon.workdir / "daemon.log"
        fds_at_start = open_fds(daemon.pid)  # before any crowd: the daemon's own descriptors
        time_nixvmctl(daemon.socket, daemon.pid)  # warm the page cache for Python's imports
        results.append(measure("0 held", daemon.socket, daemon.pid, 0, args.samples, log))
        print("0 held: done", file=sys.stderr)
        results.append(measure(f"{args.held} held", daemon.socket, daemon.pid, args.held, args.samples, log))
        print(f"{args.held} held: done", file=sys.stderr)
        _, daemon_hard = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (fds_at_start + 8, daemon_hard))
        results.append(
            measure(f"{args.held} held, fds short", daemon.socket, daemon.pid, args.held, args.samples, log)
        )
        print(f"{args.held} held, fds short: done", file=sys.stderr)
    print(report(results))
    print(f"\nLoad average before / after: {load_before} / {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
