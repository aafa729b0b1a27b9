"""Garbled console lines per run under host load: how the guest's console reaches nixvmd.

Boots the KUnit kernel (tinyconfig + KUnit, /var/cache/nixvmd/kernels/kunit-tiny/bzImage)
N times per console path, with two CPU hogs on the host, and counts the KTAP lines that
did not arrive intact: every KTAP line of an idle-host reference boot (version, plan,
`# Subtest:`, result and `# Totals` lines) that is missing from what a path delivered.
It also compares the test names parsed from each run with the reference run's.

Paths (`--paths`, comma-separated):

- `old`: what nixvmd did before: the serial port on a socket chardev with `logfile=`
  (QEMU's logfile was console.log), read by an asyncio reader that hands every line to
  the KTAP parser, the splat scanner and an event encoder, as the daemon's loop did.
  Counted twice: the stream the parser got and the logfile.
- `serial-file`: `-serial file:` (a regular file: QEMU's writes never fail).
- `hvc-socket`: serial to a file plus `console=hvc0` on a `virtconsole` whose chardev is a
  socket, read as in `old`; the hvc0 stream is counted.
- `new`: nixvmd itself: `nixvmd --once` with `kind = "kunit"` (whatever console path the
  code has now), counted on the run's console.log and its run.json test names.

The raw-QEMU paths boot without an initramfs: KUnit runs before init, then the kernel
panics for want of a root file system and `panic=-1` with `-no-reboot` ends QEMU.
The hogs are bounded in time (`--hog-seconds`) and killed at the end whatever happens.

Run: python bench/bench_console.py [--runs 5] [--paths old,new] [--hogs 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nixvmd.suite.ktap import KtapParser
from nixvmd.suite.splats import SplatScanner, strip_printk
from nixvmd.vm.cmdline import Accelerator, kernel_cmdline

KERNEL = Path(os.environ.get("NIXVMD_KERNEL_CACHE", "/var/cache/nixvmd/kernels")) / "kunit-tiny" / "bzImage"
QEMU = "qemu-system-x86_64"
RUN_TIMEOUT = 300.0
_KTAP_LINE = re.compile(r"^\s*(?:K?TAP version \d+|1\.\.\d+|# Subtest: |# Totals: |ok \d+|not ok \d+)")


@dataclass
class Delivered:
    """What one run's console path delivered: the lines the parser saw, the log on disk."""

    stream: list[str]
    log: list[str] | None
    names: list[str]
    seconds: float


@dataclass
class Tally:
    """One run, counted against the reference."""

    path: str
    stream_garbled: int
    log_garbled: int | None
    names_differing: int
    seconds: float
    examples: list[str] = field(default_factory=list)


def ktap_lines(lines: list[str]) -> list[str]:
    """The KTAP lines of a console, without printk timestamps (what must arrive intact)."""
    out = []
    for line in lines:
        _, message = strip_printk(line)
        message = message.rstrip()
        if _KTAP_LINE.match(message):
            out.append(message)
    return out


def missing_lines(reference: list[str], got: list[str]) -> list[str]:
    """Reference KTAP lines that `got` lacks (a line garbled in transit is missing intact)."""
    have = collections.Counter(ktap_lines(got))
    missing = []
    for line in ktap_lines(reference):
        if have[line] > 0:
            have[line] -= 1
        else:
            missing.append(line)
    return missing


def parsed_names(lines: list[str]) -> list[str]:
    parser = KtapParser()
    for line in lines:
        parser.feed(line)
    return [t.name for t in parser.finish().tests]


def _base_argv(kernel: Path, append: str) -> list[str]:
    return [
        QEMU,
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "pc",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-m",
        "256M",
        "-smp",
        "1",
        "-kernel",
        str(kernel),
        "-append",
        append,
        "-no-reboot",
    ]


class _DaemonLikeReader:
    """Reads a socket chardev the way nixvmd's loop did: per line, parse, scan, encode an event."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.parser = KtapParser()
        self.splats = SplatScanner()

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.parser.feed(text)
        self.splats.set_test(self.parser.current)
        self.splats.feed(text)
        json.dumps({"event": "console", "run_id": "bench", "line": text})

    async def pump(self, reader: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await reader.read(65536):
            pending += chunk
            *whole, pending = pending.split(b"\n")
            for raw in whole:
                self.line(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if pending:
            self.line(pending.decode("utf-8", "replace"))


async def _qemu_with_socket(argv: list[str], socket_path: Path) -> tuple[list[str], float]:
    """Run QEMU whose chardev connects to `socket_path`; the lines read from it, and the time."""
    reader = _DaemonLikeReader()
    connected = asyncio.Event()
    pumps: list[asyncio.Task[None]] = []

    async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connected.set()
        task = asyncio.current_task()
        assert task is not None
        pumps.append(task)
        await reader.pump(r)
        w.close()

    server = await asyncio.start_unix_server(accepted, path=str(socket_path))
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(proc.wait(), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    seconds = time.monotonic() - t0
    for task in pumps:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 10)
    server.close()
    return reader.lines, seconds


def run_old(kernel: Path, work: Path) -> Delivered:
    sock, log = work / "con.sock", work / "console.log"
    argv = [
        *_base_argv(kernel, kernel_cmdline("", Accelerator.TCG)),
        "-chardev",
        f"socket,id=con,path={sock},logfile={log},logappend=on",
        "-serial",
        "chardev:con",
    ]
    stream, seconds = asyncio.run(_qemu_with_socket(argv, sock))
    logged = log.read_text(errors="replace").splitlines()
    return Delivered(stream, logged, parsed_names(stream), seconds)


def run_serial_file(kernel: Path, work: Path) -> Delivered:
    log = work / "console.log"
    argv = [*_base_argv(kernel, kernel_cmdline("", Accelerator.TCG)), "-serial", f"file:{log}"]
    t0 = time.monotonic()
    subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    seconds = time.monotonic() - t0
    lines = log.read_text(errors="replace").splitlines()
    return Delivered(lines, None, parsed_names(lines), seconds)


def run_hvc_socket(kernel: Path, work: Path) -> Delivered:
    sock, serial = work / "hvc.sock", work / "serial.log"
    argv = [
        *_base_argv(kernel, kernel_cmdline("console=hvc0", Accelerator.TCG)),
        "-serial",
        f"file:{serial}",
        "-device",
        "virtio-serial-pci,id=vser",
        "-chardev",
        f"socket,id=hvc,path={sock}",
        "-device",
        "virtconsole,bus=vser.0,chardev=hvc",
    ]
    stream, seconds = asyncio.run(_qemu_with_socket(argv, sock))
    return Delivered(stream, None, parsed_names(stream), seconds)


def run_new(kernel: Path, work: Path) -> Delivered:
    tree = work / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel, tree / "arch/x86/boot/bzImage")
    state = work / "state"
    config = work / "nixvmd.toml"
    config.write_text(
        f'[kernel]\ntree = "{tree}"\n[vm]\naccel = "tcg"\nmemory = "256M"\ncpus = 1\n'
        f'[suite]\nkind = "kunit"\ntimeout = "300s"\n[notify]\non = []\n'
        f'[daemon]\nstate_dir = "{state}"\nsocket = "{work / "c.sock"}"\n'
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nixvmd.daemon.main", "--once", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - t0
    record = json.loads(done.stdout)
    lines = (state / "runs" / record["id"] / "console.log").read_text(errors="replace").splitlines()
    return Delivered(lines, None, [t["name"] for t in record["tests"]], seconds)


PATHS: dict[str, Callable[[Path, Path], Delivered]] = {
    "old": run_old,
    "serial-file": run_serial_file,
    "hvc-socket": run_hvc_socket,
    "new": run_new,
}


@contextlib.contextmanager
def cpu_hogs(count: int, seconds: float) -> Iterator[None]:
    """`count` busy processes for at most `seconds`; killed on the way out in any case."""
    program = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", program]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def tally(path: str, got: Delivered, reference: Delivered) -> Tally:
    stream_missing = missing_lines(reference.stream, got.stream)
    log_missing = missing_lines(reference.stream, got.log) if got.log is not None else None
    ref_names = collections.Counter(reference.names)
    names = collections.Counter(got.names)
    differing = sum(((ref_names - names) + (names - ref_names)).values())
    examples = [line.strip() for line in stream_missing[:3]]
    if got.log is not None:
        have = set(ktap_lines(got.log))
        wanted = set(ktap_lines(reference.stream))
        examples += [f"log: {line.strip()}" for line in sorted(have - wanted)[:3]]
    return Tally(
        path,
        len(stream_missing),
        len(log_missing) if log_missing is not None else None,
        differing,
        got.seconds,
        examples,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paths", default="old,new")
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--hog-seconds", type=float, default=600.0)
    parser.add_argument("--kernel", type=Path, default=KERNEL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {unknown}; choose from {sorted(PATHS)}")
    if not args.kernel.is_file():
        parser.error(f"no KUnit kernel at {args.kernel}: run scripts/build-kunit-kernel.sh first")
    work = Path(tempfile.mkdtemp(prefix="nvb-", dir="/tmp"))
    tallies: list[Tally] = []
    try:
        (work / "reference").mkdir()
        reference = run_serial_file(args.kernel, work / "reference")
        ktap = len(ktap_lines(reference.stream))
        print(f"reference (idle host, -serial file:): {len(reference.names)} tests, {ktap} KTAP lines")
        for path in paths:
            with cpu_hogs(args.hogs, args.hog_seconds):
                for index in range(args.runs):
                    run_dir = work / f"{path}-{index}"
                    run_dir.mkdir()
                    got = PATHS[path](args.kernel, run_dir)
                    tallies.append(tally(path, got, reference))
                    t = tallies[-1]
                    print(
                        f"{path} run {index + 1}: stream garbled {t.stream_garbled}, "
                        f"log garbled {t.log_garbled}, names differing {t.names_differing}, "
                        f"{t.seconds:.1f}s {t.examples}",
                        flush=True,
                    )
                    shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| path | runs | KTAP lines garbled per run (stream) | (log) | test names differing | s/run |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        mine = [t for t in tallies if t.path == path]
        if not mine:
            continue
        stream = ", ".join(str(t.stream_garbled) for t in mine)
        logs = ", ".join(str(t.log_garbled) for t in mine) if mine[0].log_garbled is not None else "-"
        names = ", ".join(str(t.names_differing) for t in mine)
        secs = sum(t.seconds for t in mine) / len(mine)
        print(f"| {path} | {len(mine)} | {stream} | {logs} | {names} | {secs:.0f} |")
    if args.json is not None:
        args.json.write_text(json.dumps([t.__dict__ for t in tallies], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
