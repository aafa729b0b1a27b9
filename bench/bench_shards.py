"""Benchmark of shards: the same CPU-bound fstests set in one VM and in N VMs at once.

Each measurement is `nixvmd --once` on a fresh copy of nothing but its config: direct
backend with the host root shared, TCG, one vCPU per VM, the xfstests suite over the
stand-in check (tests/fixtures/fstests) whose `burn/*` tests spin the guest's CPU for a fixed
amount of work (a count of shell-loop iterations, not a wall-clock time: two VMs contending
for one core take twice as long, so the speed-up measured is the machine's, not a clock's).
The set is uneven on purpose (default weights 40, 30, 20, 20, 10, 10, 10), so the split
matters: longest first over the previous durations, which the first (one-shard) run of each
round records in the shared state_dir's check.time.

Rounds alternate the order (1 then N, N then 1), so a drift in the host's load does not
favour one side. Per run:

- makespan: the run's wall time (run.json started_at to finished_at), boot to record;
- busy: each shard's sum of test durations (run.json tests' `duration_s`);
- ideal: the one-shard run's fixed cost (its makespan minus its tests' time: boot, mkfs,
  teardown) plus max(sum of durations / N, the longest test) — what perfect packing over N
  VMs that each pay the fixed cost once would take;
- peak RSS of each shard's QEMU (VmHWM, sampled every 0.25 s while it lives).

Targets (issue 10): speed-up of N=2 over 1 ≥ 1.6x on this 2-core machine; makespan within
15 % of the ideal.

Run: python bench/bench_shards.py [--rounds 2] [--shards 2] [--unit 120000] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KERNEL_ROOT = Path(os.environ.get("NIXVMD_KERNEL_CACHE", "/var/cache/nixvmd/kernels")) / "debian-cloud"
FSTESTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fstests"
WEIGHTS = (40, 30, 20, 20, 10, 10, 10)
TARGET_SPEEDUP = 1.6
TARGET_IDEAL = 1.15


def burn_list(weights: tuple[int, ...], unit: int) -> tuple[list[str], str]:
    """The burn tests and the stand-in's burn.list: weight x unit loop iterations each, all passing."""
    names = [f"burn/{1 + i:03d}" for i in range(len(weights))]  # the stand-in tree lists burn/001-030
    lines = [f"{name} {w * unit}i pass" for name, w in zip(names, weights, strict=True)]
    return names, "\n".join(lines) + "\n"


def config_text(work: Path, shards: int, tests: list[str]) -> str:
    args = json.dumps(tests)
    return f"""
[kernel]
tree = "{work / "linux"}"
modules_dir = "{KERNEL_ROOT / "modules"}"

[image]
share_host_root = true

[vm]
accel = "tcg"
memory = "768M"
cpus = 1
boot_timeout = "300s"

[suite]
kind = "xfstests"
timeout = "60m"
shards = {shards}
resume_limit = 0

[notify]
on = []

[daemon]
state_dir = "{work / "state"}"
socket = "{work / "ctl.sock"}"

[xfstests]
dir = "{work / "fstests"}"
test_size = "320M"
scratch_size = "320M"
args = {args}
"""


@dataclass
class RssSampler:
    """Peak RSS (VmHWM) of every QEMU below `root`, keyed by the shard its console log names."""

    root: int
    peaks: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.25):
            for pid in _descendants(self.root):
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if not cmdline or not cmdline[0].endswith(b"qemu-system-x86_64"):
                        continue
                    shard = _shard_of(cmdline)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            kib = int(line.split()[1])
                            self.peaks[shard] = max(self.peaks.get(shard, 0), kib)


def _shard_of(cmdline: list[bytes]) -> str:
    """`shard k` when QEMU's arguments name a path under `shards/<k>/`, else `vm`."""
    for arg in cmdline:
        text = arg.decode(errors="replace")
        if "/shards/" in text:
            return "shard " + text.split("/shards/", 1)[1].split("/", 1)[0]
    return "vm"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def nixvmd_argv(config: Path) -> list[str]:
    exe = shutil.which("nixvmd")
    base = [exe] if exe is not None else [sys.executable, "-m", "nixvmd.daemon.main"]
    return [*base, "--config", str(config), "--once", "--json"]


def one_run(work: Path, shards: int, tests: list[str], timeout: float) -> dict[str, Any]:
    """`nixvmd --once` with `shards` shards; the run's figures."""
    config = work / f"nixvmd-{shards}.toml"
    config.write_text(config_text(work, shards, tests))
    with (work / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(nixvmd_argv(config), stdout=subprocess.PIPE, stderr=log, cwd=work)
        sampler = RssSampler(proc.pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sampler.stop.set()
            thread.join()
    record: dict[str, Any] = json.loads(out)
    if record.get("outcome") != "passed":
        raise RuntimeError(f"the {shards}-shard run ended {record.get('outcome')}: {record.get('reason')}")
    busy: dict[str, float] = {}
    for test in record["tests"]:
        key = f"shard {test.get('shard', 0) or 0}"
        busy[key] = busy.get(key, 0.0) + float(test.get("duration_s") or 0.0)
    return {
        "shards": shards,
        "makespan": record["finished_at"] - record["started_at"],
        "durations": {t["name"]: float(t.get("duration_s") or 0.0) for t in record["tests"]},
        "busy": busy,
        "rss_kib": dict(sampler.peaks),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


@contextlib.contextmanager
def workspace(unit: int) -> Iterator[tuple[Path, list[str]]]:
    work = Path(tempfile.mkdtemp(prefix="nvb-shards-", dir="/tmp"))
    try:
        (work / "linux/arch/x86/boot").mkdir(parents=True)
        shutil.copy(KERNEL_ROOT / "vmlinuz", work / "linux/arch/x86/boot/bzImage")
        shutil.copytree(FSTESTS, work / "fstests")
        tests, listing = burn_list(WEIGHTS, unit)
        (work / "fstests" / "burn.list").write_text(listing)
        yield work, tests
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ideal(one: dict[str, Any], n: int) -> float:
    """The one-shard run's fixed cost plus perfect packing of its tests over `n` VMs."""
    durations: list[float] = list(one["durations"].values())
    fixed = float(one["makespan"]) - sum(durations)
    return fixed + max(sum(durations) / n, max(durations))


def report(rounds: list[tuple[dict[str, Any], dict[str, Any]]], n: int, unit: int) -> str:
    lines = [
        f"Set: {len(WEIGHTS)} burn tests, weights {'/'.join(map(str, WEIGHTS))} x {unit} loop iterations;"
        f" {len(rounds)} round(s), 1 and {n} shard(s) alternating; TCG, 1 vCPU and 768M per VM.",
        "",
        f"| round | 1 shard makespan s | {n} shards makespan s | speed-up | ideal s | makespan / ideal "
        "| busy per shard s | peak RSS per QEMU MiB | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    speedups, ratios = [], []
    for i, (one, many) in enumerate(rounds, 1):
        best = ideal(one, n)
        speedup = one["makespan"] / many["makespan"]
        ratio = many["makespan"] / best
        speedups.append(speedup)
        ratios.append(ratio)
        busy = ", ".join(f"{v:.0f}" for _, v in sorted(many["busy"].items()))
        rss = ", ".join(
            f"{k}: {v / 1024:.0f}" for k, v in sorted({**one["rss_kib"], **many["rss_kib"]}.items())
        )
        lines.append(
            f"| {i} | {one['makespan']:.1f} | {many['makespan']:.1f} | {speedup:.2f}x | {best:.1f} "
            f"| {ratio:.2f} | {busy} | {rss} | {one['load']} / {many['load']} |"
        )
    speedup, ratio = statistics.median(speedups), statistics.median(ratios)
    speed_ok = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    ideal_ok = "met" if ratio <= TARGET_IDEAL else "NOT met"
    lines += [
        "",
        f"Median speed-up {speedup:.2f}x (target ≥ {TARGET_SPEEDUP}: {speed_ok});"
        f" median makespan/ideal {ratio:.2f} (target ≤ {TARGET_IDEAL}: {ideal_ok}).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--unit", type=int, default=120000, help="loop iterations per unit of weight")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rounds = []
    with workspace(args.unit) as (work, tests):
        for r in range(args.rounds):
            order = (1, args.shards) if r % 2 == 0 else (args.shards, 1)
            got = {n: one_run(work, n, tests, args.timeout) for n in order}
            rounds.append((got[1], got[args.shards]))
            print(
                f"round {r + 1}: 1 shard {got[1]['makespan']:.1f} s, {args.shards} shards "
                f"{got[args.shards]['makespan']:.1f} s",
                file=sys.stderr,
            )
    print(report(rounds, args.shards, args.unit))
    if args.json is not None:
        args.json.write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
