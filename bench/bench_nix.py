"""Benchmark of the nix backend against the direct one: kernel change to the suite starting.

Two daemons run side by side on one host, idle in turn: one with the direct backend, one
with the nix backend on the fixture <nixpkgs/nixos> (tests/fixtures/nix, put on NIX_PATH as
nixpkgs=...) whose vm.nix boots nixvmd's own base initramfs, as tests/e2e/test_nix_backend.py
does. Both boot the same kernel (Debian's cloud kernel from /var/cache/nixvmd/kernels) under
TCG with the same memory and cpus, suite command "true". After one warm-up run each, the
runs alternate (direct, nix, direct, nix, ...) so that load from other processes hits both
alike. Each run is timed from just after close() of the bzImage written in place to the
daemon's `state: testing` event (the agent reported ready; its `start` frame follows at
once), and split with the run's own phases from run.json.

Every nix program is wrapped (as tests/image/conftest.py's nix_calls does): a logging
script first on the nix daemon's PATH, so the number of Nix processes per kernel change is
counted. The runner script's own start-up is measured apart: `run-test-node-vm -version`
(the run's environment, so the script does all it does before exec'ing QEMU, and QEMU
exits at once) against `qemu-system-x86_64 -version`. For reference, the wall time of a
no-op `nix-build` of the already built fixture.

Run: python bench/bench_nix.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_loop import KERNEL_ROOT, Daemon, kernel_to_init, loadavg, median_spread, write_in_place

from nixvmd.ctl.client import Client
from nixvmd.image.initramfs import InitramfsSpec, build_initramfs
from nixvmd.image.modules import resolve_modules_dir

REPO = Path(__file__).resolve().parent.parent
NIX_FIXTURES = REPO / "tests" / "fixtures" / "nix"
NIX_PROGRAMS = ("nix", "nix-build", "nix-instantiate", "nix-store", "nix-shell", "nix-env", "nix-daemon")
BACKENDS = ("direct", "nix")
PHASES = ("prepare", "qemu_start", "boot")
QEMU = "/usr/bin/qemu-system-x86_64"
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]", re.MULTILINE)


def last_kernel_stamp(console_log: Path) -> float | None:
    """The guest clock of the last kernel message: how far into the boot the guest itself got."""
    with contextlib.suppress(OSError):
        stamps = _STAMP.findall(console_log.read_text(errors="replace"))
        if stamps:
            return float(stamps[-1])
    return None


class Events:
    """A subscription to the daemon's events, read line by line with deadlines."""

    def __init__(self, sock: Path, kinds: list[str]) -> None:
        self.client = Client(sock, timeout=None)
        self.client.call("subscribe", events=kinds)

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


def nix_wrappers(bin_dir: Path, log: Path) -> None:
    """Logging wrappers for every nix program found on PATH, in `bin_dir`."""
    bin_dir.mkdir(parents=True)
    for program in NIX_PROGRAMS:
        real = shutil.which(program)
        if real is None:
            continue
        wrapper = bin_dir / program
        wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"{program} $*\" >>{shlex.quote(str(log))}\n"
            f'exec {shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)


def nix_calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def agent_initrd(dest: Path, work: Path) -> None:
    """nixvmd's base initramfs for the cloud kernel (agent as /init, no job), gzipped."""
    release = (KERNEL_ROOT / "version").read_text().strip()
    spec = InitramfsSpec(
        busybox=Path("/bin/busybox"),
        release=release,
        modules_root=resolve_modules_dir(KERNEL_ROOT / "modules", release),
    )
    base = build_initramfs(spec, work / "initramfs")
    dest.write_bytes(gzip.compress(base.path.read_bytes(), mtime=0))


def config_text(backend: str, tree: Path, state: Path, sock: Path, vm_nix: Path) -> str:
    """Same VM for both: TCG, 512M, 2 cpus, command "true"; the backend's own disks."""
    if backend == "nix":
        kernel_extra = ""
        image = f'[image]\nbackend = "nix"\nnix_file = "{vm_nix}"\n'
        disks = ""  # the fixture vm.nix has one 64M emptyDiskImage (and the runner's root disk)
    else:
        kernel_extra = f'modules_dir = "{KERNEL_ROOT / "modules"}"\n'
        image = ""
        disks = 'disks = [{ name = "scratch", size = "64M" }]\n'
    return f"""
[kernel]
tree = "{tree}"
{kernel_extra}
{image}
[vm]
accel = "tcg"
memory = "512M"
cpus = 2
boot_timeout = "180s"
{disks}
[suite]
kind = "command"
command = "true"
timeout = "120s"

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"
"""


@contextlib.contextmanager
def daemons(work: Path, env: dict[str, str]) -> Iterator[dict[str, tuple[Daemon, Events, Path]]]:
    """Both daemons, each with its kernel tree and event stream; all stopped afterwards."""
    vm_dir = work / "vm"
    started: dict[str, tuple[Daemon, Events, Path]] = {}
    try:
        for backend in BACKENDS:
            home = work / backend
            tree = home / "linux"
            (tree / "arch/x86/boot").mkdir(parents=True)
            config = home / "nixvmd.toml"
            sock = home / "ctl.sock"
            config.write_text(config_text(backend, tree, home / "state", sock, vm_dir / "vm.nix"))
            daemon = Daemon(home, config, sock, env if backend == "nix" else {})
            daemon.start(timeout=60)
            try:
                events = Events(sock, ["run", "state", "kernel", "build"])
            except BaseException:
                daemon.stop()
                raise
            started[backend] = (daemon, events, tree / "arch/x86/boot/bzImage")
        yield started
    finally:
        for daemon, events, _ in started.values():
            events.close()
            daemon.stop()


def wait_for_image(daemon: Daemon, events: Events) -> None:
    """Until the nix daemon's first build is done (subscribed before asking, so no race)."""
    image = daemon.status().get("image") or {}
    if image.get("path") and not image.get("building"):
        return
    end = events.wait_for("build", 600, phase="end")
    if not end.get("ok"):
        raise RuntimeError(f"the fixture image did not build: {end}")


def one_run(daemon: Daemon, events: Events, image: Path, data: bytes, calls_log: Path) -> dict[str, Any]:
    """One bzImage write to the suite starting (`state: testing`), then on to the run's end."""
    before = len(nix_calls(calls_log))
    t0 = write_in_place(image, data)
    kernel = events.wait_for("kernel", 60, ok=True)
    start = events.wait_for("run", 60, phase="start")
    testing = events.wait_for("state", 300, state="testing")
    end = events.wait_for("run", 300, phase="end", run_id=start["run_id"])
    run_dir = daemon.workdir / "state/runs" / start["run_id"]
    record = json.loads((run_dir / "run.json").read_text())
    phases = record.get("phases", {})
    return {
        "run_id": start["run_id"],
        "outcome": end.get("outcome"),
        "to_suite": testing["time"] - t0,
        "detect": kernel["time"] - t0,
        "plan": start["time"] - kernel["time"],
        **{name: float(phases.get(name, 0.0)) for name in PHASES},
        "kernel_to_init": kernel_to_init(run_dir / "console.log"),
        "last_kernel_line": last_kernel_stamp(run_dir / "console.log"),
        "nix_calls": nix_calls(calls_log)[before:],
        "command": record.get("command", []),
        "environment": record.get("environment", {}),
    }


def time_exec(argv: list[str], env: dict[str, str] | None, cwd: Path | None, n: int) -> list[float]:
    """Wall time of `argv` from spawn to exit, n times."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True, timeout=60)
        times.append(time.monotonic() - t0)
    return times


def runner_startup(nix_run: dict[str, Any], n: int) -> dict[str, list[float]]:
    """The runner script's own cost: `runner -version` against `qemu -version`, same env and cwd."""
    env = dict(nix_run["environment"])
    cwd = Path(env["TMPDIR"])
    return {
        "runner": time_exec([*nix_run["command"], "-version"], env, cwd, n),
        "qemu": time_exec([QEMU, "-version"], env, cwd, n),
    }


def noop_nix_build(vm_nix: Path, env: dict[str, str], n: int) -> list[float]:
    """`nix-build '<nixpkgs/nixos>' -A vm` of the already built fixture: evaluation only."""
    argv = [
        "nix-build",
        "<nixpkgs/nixos>",
        "-A",
        "vm",
        "--arg",
        "configuration",
        str(vm_nix),
        "--no-out-link",
    ]
    return time_exec(argv, {**os.environ, **env}, vm_nix.parent, n)


def ms(values: list[float]) -> str:
    return median_spread(values)


def report(rows: dict[str, list[dict[str, Any]]], extra: dict[str, Any]) -> str:
    lines = [
        "| | direct, median ms (min-max) | nix, median ms (min-max) | nix - direct (medians) |",
        "|---|---|---|---|",
    ]
    for col in ("to_suite", "detect", "plan", *PHASES):
        d = [r[col] for r in rows["direct"]]
        x = [r[col] for r in rows["nix"]]
        diff = (statistics.median(x) - statistics.median(d)) * 1000
        lines.append(f"| {col} | {ms(d)} | {ms(x)} | {diff:+.0f} |")
    for key, what in (("kernel_to_init", "`Run /init`"), ("last_kernel_line", "last kernel message")):
        cells = [", ".join(f"{r[key]:.2f}" for r in rows[b] if r[key] is not None) for b in BACKENDS]
        lines.append(f"| guest clock at {what}, s | {cells[0]} | {cells[1]} | |")
    st = extra["startup"]
    startup = (statistics.median(st["runner"]) - statistics.median(st["qemu"])) * 1000
    lines += [
        "",
        "| measure | value |",
        "|---|---|",
        f"| nix processes per kernel change (wrapped nix programs) | "
        f"{', '.join(str(len(r['nix_calls'])) for r in rows['nix'])} |",
        f"| nix processes during the whole timed phase | {extra['timed_nix_calls']} |",
        f"| `runner -version`, median (min-max) ms, n={len(st['runner'])} | {ms(st['runner'])} |",
        f"| `qemu-system-x86_64 -version`, median (min-max) ms | {ms(st['qemu'])} |",
        f"| runner script's own start-up (difference of medians) | {startup:.0f} ms |",
        f"| no-op `nix-build '<nixpkgs/nixos>' -A vm` of the built fixture, median (min-max) ms | "
        f"{ms(extra['noop_build'])} |",
        f"| outcomes | {', '.join(sorted({str(r['outcome']) for b in BACKENDS for r in rows[b]}))} |",
        f"| load average before / after | {extra['load_before']} / {extra['load_after']} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--startup-samples", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (console logs, run records)")
    args = parser.parse_args()
    if shutil.which("nix-build") is None:
        print("Nix is not installed (scripts/setup-nix.sh)", file=sys.stderr)
        return 2
    data = (KERNEL_ROOT / "vmlinuz").read_bytes()
    work = Path(tempfile.mkdtemp(prefix="nvn-", dir="/tmp"))
    calls_log = work / "nix-calls.log"
    try:
        nix_wrappers(work / "nix-bin", calls_log)
        shutil.copytree(NIX_FIXTURES / "vm", work / "vm")
        agent_initrd(work / "vm" / "initrd.cpio.gz", work)
        nix_env = {
            "NIX_PATH": f"nixpkgs={NIX_FIXTURES / 'nixpkgs'}",
            "PATH": f"{work / 'nix-bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        extra: dict[str, Any] = {"load_before": loadavg()}
        rows: dict[str, list[dict[str, Any]]] = {b: [] for b in BACKENDS}
        warmups: dict[str, dict[str, Any]] = {}
        with daemons(work, nix_env) as running:
            wait_for_image(running["nix"][0], running["nix"][1])
            for backend in BACKENDS:
                warmups[backend] = one_run(*running[backend], data, calls_log)
            timed_from = len(nix_calls(calls_log))
            for i in range(args.runs):
                for backend in BACKENDS:
                    row = one_run(*running[backend], data, calls_log)
                    rows[backend].append(row)
                    print(
                        f"run {i + 1}/{args.runs} {backend}: to suite {row['to_suite']:.3f}s "
                        f"({row['outcome']}, nix calls {len(row['nix_calls'])})",
                        file=sys.stderr,
                    )
            extra["startup"] = runner_startup(rows["nix"][-1], args.startup_samples)
            extra["timed_nix_calls"] = len(nix_calls(calls_log)) - timed_from
        extra["noop_build"] = noop_nix_build(work / "vm" / "vm.nix", nix_env, 3)
        extra["load_after"] = loadavg()
        extra["setup_nix_calls"] = nix_calls(calls_log)[:timed_from]
        print(report(rows, extra))
        print("\nNix calls before the timed runs (first start's build and input discovery):")
        for call in extra["setup_nix_calls"]:
            print(f"    {call}")
        if args.json is not None:
            raw = {"rows": rows, "warmups": warmups, **extra}
            args.json.write_text(json.dumps(raw, indent=1, default=str))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
