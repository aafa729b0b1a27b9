"""Benchmark of the Nix engine: 2 shards built on a loopback builder against 2 local shards.

Two daemons, each on a kernel tree and state_dir of its own, run the same xfstests set over
the stand-in check in 2 shards: one with `[distribute] engine = "local"` (two QEMUs here, the
host root shared), one with `engine = "nix"` and the loopback builder of tests/nix_builder.py
(Debian's sshd on 127.0.0.1, `nix-store --serve --write` over a store of its own in a mount
namespace, so every input is really copied there and every output back). Both guests run
under TCG with 1 vCPU; the builder advertises `kvm`, which the derivations require.

Each round writes a new build of Debian's cloud kernel into each tree (new bytes: the nix
side's derivations are new, a real build, never a cache hit) and times from just after
close() to the daemon's `run end` event: the price of the engine is the difference
(adding the kernel to the store, instantiating, copying closures over SSH, Nix's
scheduling, copying outputs back, replaying them). Rounds alternate which engine goes first.

Run: python bench/bench_distribute.py [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_loop import KERNEL_ROOT, Daemon, EventStream, write_in_place

# The loopback builder is the tests' (tests/nix_builder.py): the checkout's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.nix_builder import NixBuilder, nix_builder

FSTESTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fstests"
TESTS = ["generic/001", "generic/004", "burn/001", "burn/002"]
BURN = "burn/001 3 pass\nburn/002 3 pass\n"
ENGINES = ("local", "nix")


def config_text(work: Path, engine: str, builder: NixBuilder) -> str:
    distribute = f'engine = "{engine}"'
    if engine == "nix":
        distribute += f'\nbuilders = "{builder.machine}"\nsystem_features = ["kvm"]'
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
timeout = "20m"
shards = 2
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
args = {json.dumps(TESTS)}

[distribute]
{distribute}
"""


@contextlib.contextmanager
def engine_daemon(root: Path, engine: str, builder: NixBuilder) -> Iterator[tuple[Daemon, EventStream, Path]]:
    work = root / engine
    (work / "linux/arch/x86/boot").mkdir(parents=True)
    shutil.copytree(FSTESTS, work / "fstests")
    (work / "fstests" / "burn.list").write_text(BURN)
    config = work / "nixvmd.toml"
    config.write_text(config_text(work, engine, builder))
    daemon = Daemon(work, config, work / "ctl.sock", dict(builder.env) if engine == "nix" else {})
    daemon.start()
    events = EventStream(daemon.socket)
    try:
        yield daemon, events, work / "linux/arch/x86/boot/bzImage"
    finally:
        events.close()
        daemon.stop()


def one_run(daemon: Daemon, events: EventStream, image: Path, data: bytes) -> dict[str, Any]:
    t0 = write_in_place(image, data)
    start = events.wait_for("run", 120, phase="start")
    events.wait_for("run", 1800, phase="end", run_id=start["run_id"])
    ended = time.time()
    record: dict[str, Any] = json.loads(
        (daemon.workdir / "state" / "runs" / start["run_id"] / "run.json").read_text()
    )
    if record["outcome"] != "passed":
        raise RuntimeError(f"{daemon.workdir.name} run ended {record['outcome']}: {record.get('reason')}")
    return {
        "total": ended - t0,
        "run": record["finished_at"] - record["started_at"],
        "cached": bool(record.get("cached")),
        "tests": len(record["tests"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = (KERNEL_ROOT / "vmlinuz").read_bytes()
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    root = Path(tempfile.mkdtemp(prefix="nvb-dist-", dir="/tmp"))
    try:
        with nix_builder(root / "builder") as builder, contextlib.ExitStack() as stack:
            daemons = {e: stack.enter_context(engine_daemon(root, e, builder)) for e in ENGINES}
            for r in range(args.rounds):
                for engine in ENGINES if r % 2 == 0 else tuple(reversed(ENGINES)):
                    daemon, events, image = daemons[engine]
                    results[engine].append(one_run(daemon, events, image, data))
                    got = results[engine][-1]
                    print(f"round {r + 1} {engine}: {got['total']:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        f"2 shards of {len(TESTS)} stand-in tests, new kernel bytes each round; TCG, 1 vCPU per VM.",
        "",
        "| engine | kernel written → run end, s (each round) | median s | run record's own time, median s |",
        "|---|---|---|---|",
    ]
    for engine, runs in results.items():
        totals = [r["total"] for r in runs]
        each = ", ".join(f"{t:.1f}" for t in totals)
        run = statistics.median(r["run"] for r in runs)
        lines.append(f"| {engine} | {each} | {statistics.median(totals):.1f} | {run:.1f} |")
    local = statistics.median(r["total"] for r in results["local"])
    nix = statistics.median(r["total"] for r in results["nix"])
    lines += ["", f"The engine's price: {nix - local:+.1f} s per run ({nix / local:.2f}x the local shards)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
