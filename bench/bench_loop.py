"""Benchmark of the edit-compile-test loop: bzImage close to result in status, against bare QEMU.

Starts `nixvmd --config <tmp config>` (direct backend, Debian's cloud kernel from
/var/cache/nixvmd/kernels/debian-cloud, TCG, 512M, one 64M disk) with a kernel tree in a
temporary directory, subscribes to its event stream, then N times: writes the bzImage in
place (open, truncate, write, close, as kbuild does), and times from just after close()
until `status` shows the new run as `last_run`. Each run is split into detect (close to
the daemon's `kernel` event), plan (`kernel` event to run start), the run's own phases
from run.json (prepare = initramfs + job, qemu_start, boot, suite, teardown, record) and
report (what is left: record done to result in status).

The floor: after each loop run, the same kernel, initramfs base, disk and command run by a
bare qemu-system-x86_64 with the run's own command line (from run.json) minus nixvmd's
QMP, console and agent sockets (console to a file instead), the job's command followed by
`poweroff -f`, timed from exec to QEMU's exit (-no-reboot makes the power-off end QEMU).

The first run (initramfs cache cold) is a warm-up, reported apart.

Run: python bench/bench_loop.py [--runs N] [--command CMD] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixvmd.config.load import load_config
from nixvmd.ctl.client import Client
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.direct import initramfs_spec
from nixvmd.image.disks import prepare_disks
from nixvmd.image.initramfs import build_initramfs, write_run_initrd
from nixvmd.watch.kernel_image import read_kernel_image

KERNEL_ROOT = Path(os.environ.get("NIXVMD_KERNEL_CACHE", "/var/cache/nixvmd/kernels")) / "debian-cloud"
RUN_PHASES = ("prepare", "qemu_start", "boot", "suite", "teardown", "record")
COLUMNS = ("detect", "plan", *RUN_PHASES, "report", "total")
# What only the daemon does (the bare run has no equivalent); robust to the guest's noisy boot.
DAEMON_ONLY = ("detect", "plan", "prepare", "teardown", "record", "report")
TARGET_RATIO = 1.10
TARGET_OVERHEAD_MS = 150.0
_INIT_LINE = re.compile(r"\[\s*(\d+\.\d+)\] Run /init as init process")


def kernel_to_init(console_log: Path) -> float | None:
    """The guest kernel's own timestamp of starting /init: kernel boot time, as the guest saw it."""
    with contextlib.suppress(OSError):
        match = _INIT_LINE.search(console_log.read_text(errors="replace"))
        if match is not None:
            return float(match[1])
    return None


def daemon_config(tree: Path, state: Path, sock: Path, command: str) -> str:
    """A direct-backend config like the tests' (tests/conftest.py direct_config), TCG only."""
    return f"""
[kernel]
tree = "{tree}"
modules_dir = "{KERNEL_ROOT / "modules"}"

[vm]
accel = "tcg"
memory = "512M"
cpus = 2
boot_timeout = "120s"
disks = [{{ name = "scratch", size = "64M" }}]

[suite]
kind = "command"
command = {json.dumps(command)}
timeout = "120s"

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"
"""


def daemon_argv(config: Path) -> list[str]:
    """`nixvmd --config FILE`, through the console script when it is on PATH."""
    exe = shutil.which("nixvmd")
    if exe is not None:
        return [exe, "--config", str(config)]
    return [sys.executable, "-m", "nixvmd.daemon.main", "--config", str(config)]


class NotifySocket:
    """A datagram socket standing in for systemd's: the daemon's READY=1 and WATCHDOG=1 land here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def receive_until(self, deadline: float, stop_on: str | None = None) -> None:
        """Collect datagrams until the monotonic `deadline` (or one carrying `stop_on`)."""
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                return
            self.messages.append((time.monotonic(), text))
            if stop_on is not None and stop_on in text.split("\n"):
                return

    def drain(self) -> None:
        """Take in the datagrams already queued, without waiting for more."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def saw(self, assignment: str) -> int:
        return sum(assignment in text.split("\n") for _, text in self.messages)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Daemon:
    """nixvmd in a subprocess, up once it said READY=1; stopped (SIGTERM, then SIGKILL) on exit."""

    workdir: Path
    config: Path
    socket: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    notify: NotifySocket | None = None

    def start(self, timeout: float = 30) -> None:
        self.notify = NotifySocket(self.workdir / "notify")
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update(NOTIFY_SOCKET=str(self.notify.path), PYTHONUNBUFFERED="1", **self.env)
        with (self.workdir / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                daemon_argv(self.config), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.notify.receive_until(time.monotonic() + timeout, stop_on="READY=1")
        if not self.notify.saw("READY=1"):
            raise RuntimeError(f"nixvmd did not become ready; see {self.workdir / 'daemon.log'}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        with Client(self.socket) as client:
            result: dict[str, Any] = client.call("status")
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.notify is not None:
            self.notify.close()


@contextlib.contextmanager
def running_daemon(command: str, env: dict[str, str] | None = None) -> Iterator[tuple[Daemon, Path]]:
    """A daemon on a fresh kernel tree (no bzImage yet) and state dir; all removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="nvb-", dir="/tmp"))
    tree = work / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    config = work / "nixvmd.toml"
    config.write_text(daemon_config(tree, work / "state", work / "ctl.sock", command))
    daemon = Daemon(work, config, work / "ctl.sock", env or {})
    try:
        daemon.start()
        yield daemon, tree / "arch/x86/boot/bzImage"
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


class EventStream:
    """The daemon's event stream, read line by line with deadlines."""

    def __init__(self, sock: Path) -> None:
        self.client = Client(sock, timeout=None)
        self.client.call("subscribe", events=["run", "state", "kernel", "log"])

    def wait_for(self, kind: str, timeout: float, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.client.sock.settimeout(remaining)
            line = self.client.file.readline()
            if not line:
                raise ConnectionError("the daemon closed the event stream")
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        raise TimeoutError(f"no {kind} event {match} within {timeout}s")

    def close(self) -> None:
        self.client.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` itself (its children, QEMU among them, not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_BUILDS = itertools.count(1)


def write_in_place(path: Path, data: bytes) -> float:
    """Write like kbuild (open, truncate, write, close); the wall-clock time just after close().

    Each write is a new build (trailing bytes that differ): nixvmd does not run the same
    bytes twice unless asked.
    """
    build = data + b"\0" * (16 * next(_BUILDS))
    with path.open("wb") as f:
        f.write(build)
    return time.time()


def one_loop_run(daemon: Daemon, events: EventStream, image: Path, data: bytes) -> dict[str, Any]:
    """One bzImage write through to the run's result in status, with the per-phase split."""
    cpu0 = cpu_seconds(daemon.pid)
    t0 = write_in_place(image, data)
    kernel = events.wait_for("kernel", 60, ok=True)
    start = events.wait_for("run", 60, phase="start")
    run_id = start["run_id"]
    events.wait_for("run", 300, phase="end", run_id=run_id)
    while True:
        last = daemon.status().get("last_run") or {}
        if last.get("id") == run_id:
            t_end = time.time()
            break
    daemon_cpu = cpu_seconds(daemon.pid) - cpu0
    run_dir = daemon.workdir / "state/runs" / run_id
    record = json.loads((run_dir / "run.json").read_text())
    phases = record.get("phases", {})
    row: dict[str, Any] = {
        "run_id": run_id,
        "outcome": record.get("outcome"),
        "detect": kernel["time"] - t0,
        "plan": start["time"] - kernel["time"],
        **{name: float(phases.get(name, 0.0)) for name in RUN_PHASES},
        "total": t_end - t0,
        "command": record.get("command", []),
        "kernel_to_init": kernel_to_init(run_dir / "console.log"),
        "daemon_cpu": daemon_cpu,
    }
    row["report"] = row["total"] - sum(row[c] for c in ("detect", "plan", *RUN_PHASES))
    return row


def bare_command(command: list[str], initrd: Path, console: Path, disks: Path) -> list[str]:
    """The run's QEMU command line without nixvmd's sockets: serial to a file, no QMP, no agent port.

    The run's own initrd and disks were its workspace's and are gone with it: the bare run
    boots `initrd` and its disks of the same names in `disks` (`bare_disks`).
    """
    out: list[str] = []
    args = iter(command)
    for arg in args:
        if arg == "-drive":
            options = next(args).split(",")
            image = Path(options[0].removeprefix("file="))
            out += [arg, ",".join([f"file={disks / image.name}", *options[1:]])]
        elif arg in ("-chardev", "-mon", "-serial", "-device", "-initrd"):
            value = next(args)
            if arg == "-chardev" and value.startswith("socket,id=nixvmd-"):
                continue
            if arg == "-mon" or (arg == "-device" and value.startswith("virtserialport,")):
                continue
            if arg == "-serial":
                value = f"file:{console}"
            if arg == "-initrd":
                value = str(initrd)
            out += [arg, value]
        else:
            out.append(arg)
    return out


def bare_initrd(config_path: Path, kernel_path: Path, command: str, dest: Path) -> Path:
    """The daemon's cached base initramfs plus a job that runs `command` and powers off."""
    config = load_config(config_path)
    kernel = read_kernel_image(kernel_path)
    base = build_initramfs(initramfs_spec(config, kernel), config.daemon.state_dir / "initramfs")
    job = GuestJob("command", f"{command}; poweroff -f")
    return write_run_initrd(base, job, dest)


def bare_disks(config_path: Path, dest: Path) -> Path:
    """Fresh disks as a run gets them (sparse, the config's sizes) in `dest`, for the bare runs."""
    prepare_disks(load_config(config_path).vm.disks, dest)
    return dest


def one_bare_run(argv: list[str], timeout: float = 300) -> float:
    """Exec to exit of one bare QEMU, in seconds; QEMU is killed if it outlives `timeout`."""
    console = Path(argv[argv.index("-serial") + 1].removeprefix("file:"))
    console.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bare QEMU exited {proc.returncode}: {err.decode(errors='replace')}")
    return elapsed


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median_spread(values: list[float]) -> str:
    """`median (min-max)` in milliseconds."""
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})"


def report(
    warmup: dict[str, Any], loops: list[dict[str, Any]], bares: list[float], meta: dict[str, str]
) -> str:
    """The Markdown tables and verdict."""
    lines = [f"Loop: {len(loops)} runs after one warm-up; bare QEMU: {len(bares)} runs, interleaved.", ""]
    lines.append("| phase | median ms (min-max) | warm-up ms |")
    lines.append("|---|---|---|")
    for col in COLUMNS:
        lines.append(f"| {col} | {median_spread([r[col] for r in loops])} | {warmup[col] * 1000:.0f} |")
    loop_med = statistics.median(r["total"] for r in loops)
    bare_med = statistics.median(bares)
    ratio = loop_med / bare_med
    overhead = (loop_med - bare_med) * 1000
    lines += [
        "",
        "| measure | value |",
        "|---|---|",
        f"| loop total, median (min-max) ms | {median_spread([r['total'] for r in loops])} |",
        f"| bare QEMU exec→exit, median (min-max) ms | {median_spread(bares)} |",
        f"| ratio loop / bare (medians) | {ratio:.3f} (target ≤ {TARGET_RATIO:.2f}) |",
        f"| overhead, loop - bare medians | {overhead:.0f} ms (target ≤ {TARGET_OVERHEAD_MS:.0f} ms) |",
        f"| daemon-only phases ({' + '.join(DAEMON_ONLY)}), median (min-max) ms | "
        f"{median_spread([sum(r[c] for c in DAEMON_ONLY) for r in loops])} |",
        f"| outcomes | {', '.join(sorted({str(r['outcome']) for r in loops}))} |",
        f"| load average before / after | {meta['load_before']} / {meta['load_after']} |",
        "",
        f"Ratio target {'met' if ratio <= TARGET_RATIO else 'NOT met'}; "
        f"overhead target {'met' if overhead <= TARGET_OVERHEAD_MS else 'NOT met'}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--command", default="true", help="the suite's shell command in the guest")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    data = (KERNEL_ROOT / "vmlinuz").read_bytes()
    meta = {"load_before": loadavg()}
    loops: list[dict[str, Any]] = []
    bares: list[float] = []
    bare_init: list[float | None] = []
    with running_daemon(args.command) as (daemon, image):
        events = EventStream(daemon.socket)
        try:
            warmup = one_loop_run(daemon, events, image, data)
            initrd = bare_initrd(daemon.config, image, args.command, daemon.workdir / "bare-initrd.cpio")
            disks = bare_disks(daemon.config, daemon.workdir / "bare-disks")
            argv = bare_command(warmup["command"], initrd, daemon.workdir / "bare-console.log", disks)
            for i in range(args.runs):
                loops.append(one_loop_run(daemon, events, image, data))
                bares.append(one_bare_run(argv))
                bare_init.append(kernel_to_init(daemon.workdir / "bare-console.log"))
                print(
                    f"run {i + 1}/{args.runs}: loop {loops[-1]['total']:.3f}s ({loops[-1]['outcome']}), "
                    f"bare {bares[-1]:.3f}s",
                    file=sys.stderr,
                )
        finally:
            events.close()
    meta["load_after"] = loadavg()
    print(report(warmup, loops, bares, meta))
    print(
        "\nGuest kernel's own time to `Run /init` (s), loop runs: "
        + ", ".join(f"{r['kernel_to_init']}" for r in loops)
        + "; bare runs: "
        + ", ".join(f"{t}" for t in bare_init)
    )
    print("Daemon CPU time per loop run (s): " + ", ".join(f"{r['daemon_cpu']:.2f}" for r in loops))
    print("\nBare QEMU command line:\n\n    " + " ".join(argv))
    if args.json is not None:
        raw = {
            "warmup": warmup,
            "loops": loops,
            "bare_s": bares,
            "bare_init": bare_init,
            "bare_argv": argv,
            **meta,
        }
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
