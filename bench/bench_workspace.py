"""Benchmark of a run's workspace: making and releasing it, fresh disks included, per run.

Disks are fresh for every run (nixvmd.run.workspace), so their creation is on every run's
path. This times `open_workspace` + release for no disks, the tests' one 64 MiB scratch
disk, and fstests' three default disks (xfstests.test_size/scratch_size/results_size),
in a state dir on the file system of the temporary directory (median and worst of N).
Sparse images cost a create and an ftruncate each, whatever their size. Prints a
Markdown table.

Run: python bench/bench_workspace.py [--runs N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from nixvmd.config.schema import DiskConfig, XfstestsConfig
from nixvmd.run.workspace import open_workspace

CASES: dict[str, tuple[DiskConfig, ...]] = {
    "no disks": (),
    "one 64 MiB scratch disk": (DiskConfig("scratch", 64 << 20, "nixvmd-scratch"),),
    "fstests' three default disks": XfstestsConfig().disks(),
}


def time_workspace(root: Path, disks: tuple[DiskConfig, ...], runs: int) -> list[float]:
    """Milliseconds to make and release the workspace of `runs` runs, one after the other."""
    times = []
    for n in range(runs):
        run_dir = root / "runs" / f"r{n:04d}"
        run_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        with open_workspace(run_dir, disks):
            pass
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where the state dir goes (default: $TMPDIR)")
    args = parser.parse_args()
    print("| workspace | disks (total size) | median ms | max ms |")
    print("|---|---|---|---|")
    for name, disks in CASES.items():
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            times = time_workspace(Path(tmp), disks, args.runs)
        size = sum(d.size for d in disks) >> 20
        print(f"| {name} | {len(disks)} ({size} MiB) | {statistics.median(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
