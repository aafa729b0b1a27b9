"""Benchmark of the result parsers: time and peak memory for synthetic fstests and KUnit runs.

Generates, in a temporary directory, a 2,000-test fstests run (check output,
result.xml and per-test artefacts) and a 5,000-case KUnit console log, then
times a whole parse of each (median of several runs; fstests: check output +
result.xml + artefact scan + merge) and measures peak memory with tracemalloc
at 4x and 16x: once growing the number of tests (memory should grow with the
results), once growing only the log with unrelated kernel messages (memory
should stay flat). Prints a Markdown table.

Run: python bench/bench_parsers.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

from nixvmd.suite.ktap import KtapParser
from nixvmd.suite.xfstests.output import CheckOutputParser
from nixvmd.suite.xfstests.results import find_artefacts, merge_results, parse_result_xml

FSTESTS_TESTS = 2000
KTAP_CASES = 5000
CASES_PER_SUITE = 50
TARGET_MS = 100.0


def chatter(n: int, ts: float) -> list[str]:
    """`n` kernel messages that belong to no test."""
    return [f"[{ts:12.6f}] XFS (vdb): Mounting V5 Filesystem {i:08x} in-progress" for i in range(n)]


def fstests_run(base: Path, tests: int, noise: int) -> tuple[Path, Path, Path]:
    """Write check output, result.xml and artefacts of `tests` tests, `noise` kernel lines each."""
    results = base / "results"
    out = ["FSTYP         -- xfs (non-debug)", "PLATFORM      -- Linux/x86_64 nixvm 6.1.0", ""]
    xml = ['<?xml version="1.0" encoding="UTF-8"?>', '<testsuite name="xfstests" tests="0">']
    xml.append('\t<properties><property name="FSTYP" value="xfs"/></properties>')
    failures = []
    for i in range(tests):
        name = f"generic/{i:03d}" if i < 1000 else f"group{i // 1000}/{i % 1000:03d}"
        group, number = name.split("/")
        (results / group).mkdir(parents=True, exist_ok=True)
        out.extend(chatter(noise, 10.0 + i))
        out.append(f"[{10.0 + i:12.6f}] run fstests {name} at 2024-01-01 00:00:00")
        case = f'\t<testcase classname="xfstests.global" name="{name}"'
        kind = i % 20
        if kind == 0:
            bad = f"/root/xfstests/results//{name}.out.bad"
            out.append(f"{name} 3s ... [failed, exit status 1]- output mismatch (see {bad})")
            out.extend(f"    -expected line {j}" for j in range(10))
            out.append("    ...")
            out.append(f"    (Run 'diff -u tests/{name}.out {bad}'  to see the entire diff)")
            xml.append(f'{case} time="3">')
            xml.append('\t\t<failure message="- output mismatch" type="TestFail" />')
            xml.append("\t\t<system-err>\n<![CDATA[\n-expected\n+actual\n]]>\n\t\t</system-err>")
            xml.append("\t</testcase>")
            (results / group / f"{number}.out.bad").write_text("actual\n")
            (results / group / f"{number}.full").write_text("full log\n" * 50)
            failures.append(name)
        elif kind in (1, 2):
            out.append(f"{name} 1s ... [not run] this test requires a valid $SCRATCH_DEV")
            xml.append(f'{case} time="0">')
            xml.append('\t\t<skipped message="requires a valid $SCRATCH_DEV" />\n\t</testcase>')
            (results / group / f"{number}.notrun").write_text("requires a valid $SCRATCH_DEV\n")
        elif kind == 3:
            out.append(f"{name}       [expunged]")
        else:
            out.append(f"{name} 2s ...  2s")
            xml.append(f'{case} time="2"/>')
            if kind == 4:  # KEEP_DMESG=yes keeps the clean kernel logs of passing tests
                dmesg = results / group / f"{number}.dmesg"
                dmesg.write_text("[ 1.0] XFS (vdb): Ending clean mount\n")
    out += ["Ran: " + " ".join(failures), "Failures: " + " ".join(failures)]
    out.append(f"Failed {len(failures)} of {tests} tests")
    xml.append("</testsuite>")
    check = base / "check.out"
    check.write_text("\n".join(out) + "\n")
    result_xml = results / "result.xml"
    result_xml.write_text("\n".join(xml) + "\n")
    return check, result_xml, results


def parse_fstests(check: Path, result_xml: Path, results: Path) -> int:
    parser = CheckOutputParser()
    with check.open() as lines:
        for line in lines:
            parser.feed(line)
    run = parser.finish()
    merged = merge_results(run.tests, parse_result_xml(result_xml).tests, find_artefacts(results))
    return len(merged)


def ktap_log(path: Path, cases: int, noise: int) -> Path:
    """Write a KUnit 6.1 console log of `cases` cases, `noise` kernel messages per case."""
    suites = max(1, cases // CASES_PER_SUITE)
    ts = 1.0
    with path.open("w") as f:
        f.write(f"[{ts:12.6f}] KTAP version 1\n[{ts:12.6f}] 1..{suites}\n")
        for s in range(suites):
            f.write(f"[{ts:12.6f}]     KTAP version 1\n[{ts:12.6f}]     # Subtest: suite_{s}\n")
            f.write(f"[{ts:12.6f}]     1..{CASES_PER_SUITE}\n")
            for c in range(1, CASES_PER_SUITE + 1):
                ts += 0.0001
                f.writelines(line + "\n" for line in chatter(noise, ts))
                if c % 25 == 0:
                    f.write(f"[{ts:12.6f}]     # case_{c}: EXPECTATION FAILED at lib/x.c:{c}\n")
                    f.write(f"[{ts:12.6f}]     Expected a == b, but\n[{ts:12.6f}]         a == 1\n")
                    f.write(f"[{ts:12.6f}]     not ok {c} case_{c}\n")
                elif c % 10 == 0:
                    f.write(f"[{ts:12.6f}]     ok {c} case_{c} # SKIP not supported\n")
                else:
                    f.write(f"[{ts:12.6f}]     ok {c} case_{c}\n")
            f.write(f"[{ts:12.6f}] # suite_{s}: pass:44 fail:2 skip:4 total:{CASES_PER_SUITE}\n")
            f.write(f"[{ts:12.6f}] not ok {s + 1} suite_{s}\n")
        f.write(f"[{ts:12.6f}] # Totals: pass:0 fail:0 skip:0 total:{suites * CASES_PER_SUITE}\n")
    return path


def parse_ktap_file(path: Path) -> int:
    parser = KtapParser()
    with path.open() as lines:
        for line in lines:
            parser.feed(line)
    return len(parser.finish().tests)


def measure(work: Callable[[], int], runs: int) -> tuple[float, float, float, int]:
    """Median wall and CPU ms over `runs`, peak KiB allocated during one more run, its result."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    tracemalloc.start()
    count = work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(wall), statistics.median(cpu), peak / 1024, count


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=7, help="timed runs per row (default 7)")
    runs = args.parse_args().runs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for grows, factor in (("-", 1), ("tests", 4), ("tests", 16), ("log", 4), ("log", 16)):
            tests, noise = (1, factor - 1) if grows == "log" else (factor, 0)
            base = Path(tmp) / f"fstests-{grows}-{factor}"
            check, result_xml, results = fstests_run(base, FSTESTS_TESTS * tests, noise)
            ms, cpu, kib, count = measure(partial(parse_fstests, check, result_xml, results), runs)
            size = check.stat().st_size + result_xml.stat().st_size
            rows.append(("fstests", grows, factor, size, count, ms, cpu, kib))
            log = ktap_log(Path(tmp) / f"ktap-{grows}-{factor}.log", KTAP_CASES * tests, noise)
            ms, cpu, kib, count = measure(partial(parse_ktap_file, log), runs)
            rows.append(("KTAP", grows, factor, log.stat().st_size, count, ms, cpu, kib))
    rows.sort(key=lambda row: row[0] == "KTAP")
    start = time.process_time()
    sum(range(10_000_000))
    calibration = (time.process_time() - start) * 1000
    print(f"Medians of {runs} runs (wall: perf_counter, CPU: process_time); peak: tracemalloc")
    print(f"during one more parse. Target: < {TARGET_MS:.0f} ms at 1x.")
    print("'tests' scales tests and log together; 'log' adds unrelated kernel lines only.")
    print(f"Machine speed: sum(range(10**7)) took {calibration:.0f} ms CPU here.\n")
    print("| parser | grows | x | input | tests | wall ms | CPU ms | peak KiB | KiB/test |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for parser, grows, factor, size, count, ms, cpu, kib in rows:
        print(
            f"| {parser} | {grows} | {factor} | {size / 1e6:.1f} MB | {count} | {ms:.1f} | "
            f"{cpu:.1f} | {kib:.0f} | {kib / max(count, 1):.2f} |"
        )


if __name__ == "__main__":
    main()
