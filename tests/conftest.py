"""Shared fixtures: the real kernels, a daemon in a subprocess, and the no-leftovers guard."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client, Stream
from tests.desktop import desktop_notifications as desktop_notifications  # fixtures of a real desktop session
from tests.desktop import notification_server as notification_server
from tests.desktop import session_bus as session_bus
from tests.desktop import x_display as x_display
from tests.failure_report import pytest_runtest_makereport as pytest_runtest_makereport
from tests.nix_builder import NixBuilder, nix_builder

KERNEL_CACHE = Path(os.environ.get("NIXVMD_KERNEL_CACHE", "/var/cache/nixvmd/kernels"))


@dataclass(frozen=True)
class SampleKernel:
    """A real kernel on this machine: its bzImage, modules tree and release."""

    image: Path
    modules: Path
    release: str


@pytest.fixture(scope="session")
def cloud_kernel() -> SampleKernel:
    """Debian's 6.1 cloud kernel, fetched by scripts/fetch-debian-kernel.sh (.ci/run runs it)."""
    root = KERNEL_CACHE / "debian-cloud"
    if not (root / "vmlinuz").is_file():
        pytest.fail(f"no sample kernel in {root}: run scripts/fetch-debian-kernel.sh first")
    return SampleKernel(root / "vmlinuz", root / "modules", (root / "version").read_text().strip())


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _ours(pid: int) -> bool:
    """True when `pid` descends from this test process (or was orphaned to init by it)."""
    me = os.getpid()
    while pid > 1:
        pid = _parent(pid)
        if pid == me:
            return True
    return False


def _qemu_pids(mine_only: bool = True) -> set[int]:
    """Live QEMU processes started by this test session (others' QEMUs are not ours to judge)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"qemu-system" not in argv0 or state == "Z":
            continue
        pid = int(entry.name)
        if not mine_only or _ours(pid) or _parent(pid) == 1:
            pids.add(pid)
    return pids


@pytest.fixture(autouse=True)
def no_qemu_left_behind() -> Iterator[None]:
    """Fail any test that leaves a QEMU running (acceptance: no VM outlives its owner)."""
    before = _qemu_pids()
    yield
    left = _qemu_pids() - before
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"the test left QEMU processes behind: {sorted(left)}"


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket: READY=1 says the daemon is up."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[str] = []

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m.split("\n") for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {text} from the daemon within {timeout}s: {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


class EventStream:
    """A subscription to the daemon's event stream, read with deadlines."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.seen: list[dict[str, Any]] = []

    def next(self, timeout: float) -> dict[str, Any]:
        event = self.stream.read(timeout)
        if event is None:
            raise TimeoutError(f"no event within {timeout}s")
        self.seen.append(event)
        return event

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event (from now on) that `match`es; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event within {timeout}s; saw {self.seen[-20:]}")
            try:
                event = self.next(remaining)
            except TimeoutError:
                continue
            if match(event):
                return event

    def run_end(self, timeout: float = 240) -> dict[str, Any]:
        return self.wait_for(lambda e: e["event"] == "run" and e.get("phase") == "end", timeout)

    def close(self) -> None:
        self.stream.sock.close()


class DaemonProcess:
    """`nixvmd --config FILE` in a subprocess, up once it has said READY=1."""

    def __init__(self, workdir: Path, config: Path, socket_path: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.socket = socket_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "daemon.log"
        self.notify: NotifySocket | None = None

    def start(self, timeout: float = 30) -> None:
        self.notify = NotifySocket(self.socket.parent)
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nixvmd.daemon.main", "--config", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.notify.wait_for("READY=1", timeout)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"the daemon did not become ready:\n{self.log.read_text()}") from None

    def call(self, cmd: str, **args: Any) -> Any:
        with Client(self.socket) as client:
            return client.call(cmd, **args)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def events(self, kinds: list[str] | None = None) -> EventStream:
        client = Client(self.socket)
        kinds = kinds or ["run", "state", "kernel", "config", "log"]
        return EventStream(client.open_stream("subscribe", events=kinds))

    def stop(self, timeout: float = 30) -> int:
        code = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        elif self.proc is not None:
            code = self.proc.returncode
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return code

    def text_log(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class KernelTree:
    """A stand-in kernel build tree: arch/x86/boot/ where `make` would write bzImage."""

    root: Path

    @property
    def image(self) -> Path:
        return self.root / "arch/x86/boot/bzImage"

    def write_in_place(self, data: bytes) -> None:
        """The way kbuild does it: open, truncate, write, close (one IN_CLOSE_WRITE)."""
        with self.image.open("wb") as f:
            f.write(data)

    def replace_atomically(self, data: bytes) -> None:
        """The way `install` or a careful copy does it: write aside, rename over (IN_MOVED_TO)."""
        tmp = self.image.with_name(".bzImage.tmp")
        tmp.write_bytes(data)
        os.rename(tmp, self.image)


def another_build(image: bytes, build: int) -> bytes:
    """`image` as a rebuild would write it: other bytes, build number `build` in its version.

    Only the header's version string changes (same length, so nothing moves): the kernel
    boots as before, while nixvmd sees a new image ("#1 SMP ..." becomes "#<build> SMP ...").
    """
    (pointer,) = struct.unpack_from("<H", image, 0x20E)
    start = pointer + 0x200
    end = image.index(b"\0", start)
    match = re.search(rb"#(\d+)", image[start:end])
    digits = str(build).encode()
    assert match is not None and len(digits) == len(match.group(1)), "a build number of the same width"
    at = start + match.start(1)
    return image[:at] + digits + image[at + len(digits) :]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix sockets (sun_path is 108 bytes; pytest's tmp_path is long)."""
    path = Path(tempfile.mkdtemp(prefix="nvt-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


class Tmpfs:
    """A small tmpfs mounted by a test (a file system that fills up), filled and grown at will."""

    def __init__(self, path: Path, size: int, inodes: int | None = None) -> None:
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Grow the filler file until only `leave` bytes (rounded to a page) stay free."""
        left = max(0, self.free() - leave)
        with self.filler.open("ab") as f:
            while left > 0:
                left -= f.write(bytes(min(left, 8 << 20)))

    def empty(self) -> None:
        """Space comes back: the filler goes."""
        self.filler.unlink(missing_ok=True)

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        """Unmount; lazily when something still holds it (a test that failed half way)."""
        if subprocess.run(["umount", str(self.path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


@pytest.fixture
def small_tmpfs() -> Iterator[Callable[..., Tmpfs]]:
    """Mount small tmpfs file systems (root only); every one is unmounted at the end, pass or fail."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root")
    mounted: list[Tmpfs] = []

    def mount(path: Path, size: int, inodes: int | None = None) -> Tmpfs:
        fs = Tmpfs(path, size, inodes)
        mounted.append(fs)
        return fs

    yield mount
    for fs in reversed(mounted):
        fs.unmount()


@pytest.fixture
def kernel_tree(tmp_path: Path) -> KernelTree:
    tree = KernelTree(tmp_path / "linux")
    tree.image.parent.mkdir(parents=True)
    return tree


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def direct_config(
    tree: KernelTree,
    kernel: SampleKernel,
    state: Path,
    sock: Path,
    *,
    command: str = "nixvmd-smoke",
    timeout: str = "120s",
    accel: str = "tcg",
    extra: str = "",
    qemu_options: Sequence[str] = (),
) -> str:
    """A config for the direct backend with the sample kernel's modules and one scratch disk."""
    return f"""
[kernel]
tree = "{tree.root}"
modules_dir = "{kernel.modules}"

[vm]
accel = "{accel}"
memory = "512M"
cpus = 2
boot_timeout = "120s"
disks = [{{ name = "scratch", size = "64M" }}]
qemu_options = {json.dumps(list(qemu_options))}

[suite]
kind = "command"
command = {json.dumps(command)}
timeout = "{timeout}"

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"
{extra}
"""


# The guest's device of the kept disk (`kept_disk`), found by its serial: nixvmd's own disks come first.
# No "#" in it: a command is a test name, and the baseline file takes "#" for a comment.
KEPT_DISK = "/dev/$(basename $(dirname $(grep -lx kept /sys/block/vd*/serial)))"


def kept_disk(directory: Path, size: int = 1 << 20) -> tuple[str, ...]:
    """QEMU options (vm.qemu_options) for a disk image in `directory` that every run gets.

    nixvmd gives each run fresh disks; a test that tells run 1 from run 2 by a mark the
    first leaves keeps it here, the way a user attaches a disk that outlives runs.
    """
    image = directory / "kept.img"
    with image.open("wb") as f:
        os.ftruncate(f.fileno(), size)
    return (
        "-drive",
        f"file={image},format=raw,if=none,id=kept",
        "-device",
        "virtio-blk-pci,drive=kept,serial=kept",
    )


def run_once(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`nixvmd --once --config CONFIG ARGS...` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.daemon.main", "--once", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def daemon_factory(tmp_path: Path, short_tmp: Path) -> Iterator[Callable[[str], DaemonProcess]]:
    """Start daemons from config text; every one is stopped (and checked gone) at the end."""
    started: list[DaemonProcess] = []

    def start(config_text: str) -> DaemonProcess:
        config = write_config(tmp_path / "nixvmd.toml", config_text)
        daemon = DaemonProcess(tmp_path, config, short_tmp / "ctl.sock")
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
        assert daemon.proc is None or daemon.proc.poll() is not None
        assert not daemon.socket.exists(), "the daemon left its control socket behind"


@pytest.fixture
def loopback_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NixBuilder]:
    """A Nix builder with a store of its own over SSH on 127.0.0.1 (tests/nix_builder.py), its
    client settings (NIX_SSHOPTS) in this process's environment, so Nix here and daemons
    started from here reach it; stopped, with everything it started, after the test."""
    with nix_builder(tmp_path / "builder") as builder:
        for key, value in builder.env.items():
            monkeypatch.setenv(key, value)
        yield builder
