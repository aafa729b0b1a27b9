"""The nix backend end to end: daemon process, real Nix (fixture <nixpkgs/nixos>), real QEMU (TCG).

The fixture VM boots the watched kernel through NIXPKGS_QEMU_KERNEL_test_node with nixvmd's
own base initramfs as its initrd, so the guest agent asks the daemon for its job (`hello`).
The nix_calls wrappers are first on the daemon's PATH: they count every Nix process.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.image.initramfs import InitramfsSpec, build_initramfs
from nixvmd.image.modules import resolve_modules_dir
from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel
from tests.image.conftest import (  # noqa: F401  (fixtures used by name)
    NIX_FIXTURES,
    NixCallLog,
    fixture_nix_path,
    flake_dir,
    nix_calls,
    vm_dir,
)

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
EVENTS = ["run", "state", "build", "log", "kernel", "config"]
FLAKE_VM = "#nixosConfigurations.vm.config.system.build.vm"


@pytest.fixture(scope="session")
def agent_initrd(cloud_kernel: SampleKernel, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """nixvmd's base initramfs for the cloud kernel (agent as /init, no job), gzipped."""
    spec = InitramfsSpec(
        busybox=Path("/bin/busybox"),
        release=cloud_kernel.release,
        modules_root=resolve_modules_dir(cloud_kernel.modules, cloud_kernel.release),
    )
    base = build_initramfs(spec, tmp_path_factory.mktemp("initramfs"))
    return gzip.compress(base.path.read_bytes(), mtime=0)


def nix_config(
    tree: KernelTree,
    state: Path,
    sock: Path,
    image: str,
    *,
    command: str = "uname -r",
) -> str:
    return f"""
[kernel]
tree = "{tree.root}"

[image]
backend = "nix"
{image}

[vm]
accel = "tcg"
memory = "512M"
cpus = 1
boot_timeout = "120s"

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


def _record(state: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return data


def _builds(calls: NixCallLog) -> int:
    return calls.count("nix-build") + sum(1 for c in calls.calls() if c[:2] == ["nix", "build"])


def _build_end(events: EventStream, timeout: float = 120) -> dict[str, Any]:
    return events.wait_for(lambda e: e["event"] == "build" and e.get("phase") == "end", timeout)


def _build_start(events: EventStream, timeout: float = 60) -> dict[str, Any]:
    return events.wait_for(lambda e: e["event"] == "build" and e.get("phase") == "start", timeout)


def _no_build_decision(events: EventStream) -> None:
    events.wait_for(
        lambda e: e["event"] == "log" and "content unchanged: no build" in e["line"],
        30,
    )


def _fresh(vm: Path) -> None:
    """A vm dir whose build is new to the store (so Nix really builds)."""
    (vm / "extra.nix").write_text(f'{{ boot.kernelParams = [ "nixvmd.fresh={uuid.uuid4().hex}" ]; }}\n')


@pytest.fixture
def nix_vm(vm_dir: Path, agent_initrd: bytes, fixture_nix_path: str) -> Path:  # noqa: F811
    (vm_dir / "initrd.cpio.gz").write_bytes(agent_initrd)
    _fresh(vm_dir)
    return vm_dir


def test_first_start_builds_once_and_a_kernel_change_runs_no_nix(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    nix_vm: Path,
    nix_calls: NixCallLog,  # noqa: F811
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    image = f'nix_file = "{nix_vm / "vm.nix"}"'
    daemon = daemon_factory(nix_config(kernel_tree, state, short_tmp / "ctl.sock", image))
    events = daemon.events(EVENTS)
    first = events.run_end()
    assert first["outcome"] == "passed", daemon.text_log()
    assert _builds(nix_calls) == 1
    console = (state / "runs" / first["run_id"] / "console.log").read_text()
    assert f"Linux version {cloud_kernel.release}" in console
    record = _record(state, first["run_id"])
    assert record["backend"] == "nix"
    assert record["command"][0].endswith("/bin/run-test-node-vm")
    assert Path(record["environment"]["NIXPKGS_QEMU_KERNEL_test_node"]).read_bytes() == (
        cloud_kernel.image.read_bytes()
    )
    assert record["environment"]["USE_TMPDIR"] == "1"
    assert "panic=-1" in record["environment"]["QEMU_KERNEL_PARAMS"]
    assert "nixvmd-agent" in record["environment"]["QEMU_OPTS"]
    status = daemon.status()
    assert status["image"]["backend"] == "nix"
    assert status["image"]["error"] is None
    assert status["image"]["path"].startswith("/nix/store/")

    before = len(nix_calls.calls())
    disk = state / "image" / "tmp" / "empty0.qcow2"
    inode = disk.stat().st_ino
    kernel_tree.replace_atomically(cloud_kernel.image.read_bytes())
    second = events.run_end()
    assert second["outcome"] == "passed", daemon.text_log()
    assert second["run_id"] != first["run_id"]
    assert nix_calls.calls()[before:] == []
    # The runner's emptyDiskImages live in its TMPDIR in the state dir: the same disk again.
    assert disk.stat().st_ino == inode
    assert _record(state, second["run_id"])["environment"]["TMPDIR"] == str(state / "image" / "tmp")
    events.close()
