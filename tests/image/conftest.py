"""Fixtures for the nix backend: fixture <nixpkgs/nixos>, a kernel, an initrd, a nix call log."""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixvmd.image.cpio import Entry, write_cpio

NIX_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nix"
FIXTURE_NIXPKGS = NIX_FIXTURES / "nixpkgs"
KERNEL_CACHE = Path("/var/cache/nixvmd/kernels/debian-cloud/vmlinuz")
INIT_MARKER = "NIXVMD-FIXTURE-INIT-OK"
NIX_PROGRAMS = ("nix", "nix-build", "nix-instantiate", "nix-store", "nix-shell", "nix-env")


@dataclass(frozen=True)
class KernelUnderTest:
    """A bootable bzImage and the version string in its header."""

    path: Path
    version: str


@dataclass(frozen=True)
class NixCallLog:
    """Wrappers for the nix programs, first on PATH, that log each call before running it.

    `path_entry` is the directory to put first on PATH (already done in this process);
    `calls()` returns every call so far as [program, arg, ...].
    """

    path_entry: Path
    log: Path

    def calls(self) -> list[list[str]]:
        """Every nix call so far, in order, as [program, *args]."""
        if not self.log.exists():
            return []
        return [line.split("\t") for line in self.log.read_text().splitlines()]

    def count(self, program: str | None = None) -> int:
        """How many calls (of `program`, or of any nix program) were made so far."""
        return sum(1 for call in self.calls() if program is None or call[0] == program)


def bzimage_version(path: Path) -> str:
    """The version string of an x86 bzImage (boot protocol: "HdrS" at 0x202, pointer at 0x20E)."""
    data = path.read_bytes()
    if data[0x202:0x206] != b"HdrS":
        raise ValueError(f"{path} is not a bzImage")
    (offset,) = struct.unpack_from("<H", data, 0x20E)
    start = offset + 0x200
    return data[start : data.index(b"\0", start)].decode()


def write_marker_initrd(path: Path, marker: str = INIT_MARKER) -> Path:
    """A gzipped busybox initramfs whose /init prints `marker`, /proc/version and
    /proc/cmdline, then powers off (QEMU must also run with -no-reboot: a kernel without
    ACPI halts instead)."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("no static busybox at /bin/busybox (apt-get install busybox-static)")
    init = (
        "#!/bin/busybox sh\n"
        "/bin/busybox mount -t proc proc /proc\n"
        f"echo {shlex.quote(marker)}\n"
        "/bin/busybox cat /proc/version /proc/cmdline\n"
        "/bin/busybox poweroff -f\n"
    )
    entries = [
        Entry.directory("bin"),
        Entry.directory("proc"),
        Entry.file("bin/busybox", busybox.read_bytes(), 0o755),
        Entry.file("init", init.encode(), 0o755),
    ]
    path.write_bytes(gzip.compress(write_cpio(entries), mtime=0))
    return path


def force_fresh_build(vm_dir: Path, token: str = "") -> str:
    """Rewrite vm_dir's extra.nix with a unique kernel parameter, so the next build really
    builds (the store keeps every earlier build of the same inputs); returns the parameter."""
    param = f"nixvmd.fresh={token or uuid.uuid4().hex}"
    (vm_dir / "extra.nix").write_text(f'{{ boot.kernelParams = [ "{param}" ]; }}\n')
    return param


@pytest.fixture(scope="session")
def kernel_under_test() -> KernelUnderTest:
    """A kernel to inject: $NIXVMD_TEST_KERNEL, else Debian's cloud kernel in the cache."""
    path = Path(os.environ.get("NIXVMD_TEST_KERNEL", KERNEL_CACHE))
    if not path.is_file():
        pytest.skip(
            f"no test kernel at {path}: extract linux-image-6.1.0-*-cloud-amd64 there "
            "(apt-get download, dpkg-deb -x) or set NIXVMD_TEST_KERNEL"
        )
    return KernelUnderTest(path, bzimage_version(path))


@pytest.fixture
def fixture_nix_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """NIX_PATH with nixpkgs=<the fixture nixpkgs>, so '<nixpkgs/nixos>' is the fixture's."""
    if shutil.which("nix-build") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")
    value = f"nixpkgs={FIXTURE_NIXPKGS}"
    monkeypatch.setenv("NIX_PATH", value)
    return value


@pytest.fixture
def vm_dir(tmp_path: Path) -> Path:
    """A copy of fixtures/nix/vm (vm.nix importing extra.nix) with its initrd.cpio.gz."""
    target = tmp_path / "vm"
    shutil.copytree(NIX_FIXTURES / "vm", target)
    write_marker_initrd(target / "initrd.cpio.gz")
    return target


@pytest.fixture
def flake_dir(tmp_path: Path) -> Path:
    """A self-contained flake: fixtures/nix/flake/flake.nix with the fixture nixpkgs and vm."""
    if shutil.which("nix") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")
    target = tmp_path / "flake"
    shutil.copytree(NIX_FIXTURES / "vm", target)
    shutil.copytree(FIXTURE_NIXPKGS, target / "nixpkgs")
    shutil.copy(NIX_FIXTURES / "flake" / "flake.nix", target / "flake.nix")
    write_marker_initrd(target / "initrd.cpio.gz")
    return target


@pytest.fixture
def nix_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NixCallLog]:
    """Count nix invocations: logging wrappers for the nix programs, put first on PATH."""
    bin_dir = tmp_path / "nix-call-log" / "bin"
    bin_dir.mkdir(parents=True)
    log = bin_dir.parent / "calls.log"
    for program in NIX_PROGRAMS:
        real = shutil.which(program)
        if real is None:
            continue
        wrapper = bin_dir / program
        wrapper.write_text(
            "#!/bin/sh\n"
            "# Logs this call (tab-separated) for a test, then runs the real program.\n"
            "tab=$(printf '\\t')\n"
            f"line={shlex.quote(program)}\n"
            'for arg in "$@"; do line="$line$tab$arg"; done\n'
            f"printf '%s\\n' \"$line\" >>{shlex.quote(str(log))}\n"
            f'exec {shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield NixCallLog(path_entry=bin_dir, log=log)
