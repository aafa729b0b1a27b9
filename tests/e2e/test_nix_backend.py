"""The nix backend end to end: daemon process, real Nix (fixture <nixpkgs/nixos>), real QEMU (TCG).

The fixture VM boots the watched kernel through NIXPKGS_QEMU_KERNEL_test_node with nixvmd's
own base initramfs as its initrd, so the guest agent asks the daemon for its job (`hello`).
The nix_calls wrappers are first on the daemon's PATH: they count every Nix process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.image.initramfs import InitramfsSpec, build_initramfs
from nixvmd.image.modules import resolve_modules_dir
from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel, another_build
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
    kernel_tree.replace_atomically(another_build(cloud_kernel.image.read_bytes(), 2))
    second = events.run_end()
    assert second["outcome"] == "passed", daemon.text_log()
    assert second["run_id"] != first["run_id"]
    assert nix_calls.calls()[before:] == []
    # Each run's runner works in the run's own scratch dir (its root and empty disks are
    # fresh), which goes with the run.
    for run in (first, second):
        workdir = state / "runs" / run["run_id"] / "scratch" / "runner"
        environment = _record(state, run["run_id"])["environment"]
        assert environment["TMPDIR"] == str(workdir)
        assert environment["NIX_DISK_IMAGE"] == str(workdir / "test-node.qcow2")
        assert not workdir.exists()
    events.close()


def _passed_after_one_build(events: EventStream, daemon: DaemonProcess) -> dict[str, Any]:
    built = _build_end(events)
    assert built["ok"] is True, built
    run = events.run_end()
    assert run["outcome"] == "passed", daemon.text_log()
    return run


def test_only_a_change_of_content_in_vm_nix_or_an_input_dir_rebuilds(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    nix_vm: Path,
    nix_calls: NixCallLog,  # noqa: F811
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    data = tmp_path / "xfstests-src"
    (data / "src").mkdir(parents=True)
    (data / "src" / "a.c").write_text("int a;\n")
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    vm_nix = nix_vm / "vm.nix"
    image = f'nix_file = "{vm_nix}"\ninputs = ["{data}"]'
    daemon = daemon_factory(nix_config(kernel_tree, state, short_tmp / "ctl.sock", image))
    events = daemon.events(EVENTS)
    first = _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 1

    subprocess.run(["touch", str(vm_nix)], check=True)
    _no_build_decision(events)
    vm_nix.write_bytes(vm_nix.read_bytes())  # an editor saving the same bytes
    _no_build_decision(events)
    assert _builds(nix_calls) == 1

    vm_nix.write_text(vm_nix.read_text().replace("memorySize = 256", "memorySize = 320"))
    second = _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 2
    assert _record(state, second["run_id"])["command"] != _record(state, first["run_id"])["command"]

    (data / "src" / "b.c").write_text("int b;\n")
    _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 3
    events.close()


def test_a_broken_vm_nix_keeps_the_last_good_image_until_fixed(
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
    vm_nix = nix_vm / "vm.nix"
    good = vm_nix.read_text()
    daemon = daemon_factory(nix_config(kernel_tree, state, short_tmp / "ctl.sock", f'nix_file = "{vm_nix}"'))
    events = daemon.events(EVENTS)
    first = _passed_after_one_build(events, daemon)
    good_runner = _record(state, first["run_id"])["command"][0]

    vm_nix.write_text(good.replace('hostName = "test-node";', 'hostName = "test-node"'))
    failed = _build_end(events)
    assert failed["ok"] is False
    status = daemon.status()
    assert "syntax error" in status["image"]["error"], status
    assert "vm.nix" in status["image"]["error"]
    assert status["image"]["runner"] == good_runner
    assert status["state"] == "idle"
    assert "nix image build failed" in "\n".join(daemon.call("logs")["lines"])
    failure = _record(state, status["last_run"]["id"])
    assert failure["outcome"] == "error"
    assert "syntax error" in failure["reason"]

    kernel_tree.replace_atomically(another_build(cloud_kernel.image.read_bytes(), 2))
    on_old = events.run_end()
    assert on_old["outcome"] == "passed", daemon.text_log()
    assert _record(state, on_old["run_id"])["command"][0] == good_runner

    vm_nix.write_text(good + "# fixed\n")
    _passed_after_one_build(events, daemon)
    assert daemon.status()["image"]["error"] is None
    events.close()


def test_edits_during_a_build_make_at_most_one_follow_up_build(
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
    vm_nix = nix_vm / "vm.nix"
    good = vm_nix.read_text()
    daemon = daemon_factory(nix_config(kernel_tree, state, short_tmp / "ctl.sock", f'nix_file = "{vm_nix}"'))
    events = daemon.events(EVENTS)
    _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 1

    slow = good.replace("{\n  imports", '{\n  fixture.buildHook = "sleep 3";\n  imports', 1)
    vm_nix.write_text(slow)
    _build_start(events)
    for n in range(3):
        vm_nix.write_text(slow + f"# edit {n}\n")
        time.sleep(0.2)  # three separate saves within one second, not a wait
    status = daemon.status()
    assert status["state"] == "building"
    assert status["image"]["building"] is True
    assert isinstance(status["image"]["build_elapsed_s"], float)
    first = _build_end(events)
    assert first["ok"] is True
    _build_start(events)
    run = _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 3
    starts = [e for e in events.seen if e["event"] == "build" and e.get("phase") == "start"]
    assert len(starts) == 2  # the slow build and one follow-up (the first came before)
    assert _record(state, run["run_id"])["outcome"] == "passed"
    events.close()


@pytest.fixture
def nix_flake(flake_dir: Path, agent_initrd: bytes) -> Path:  # noqa: F811
    (flake_dir / "initrd.cpio.gz").write_bytes(agent_initrd)
    _fresh(flake_dir)
    return flake_dir


def test_the_flake_form_builds_once_and_rebuilds_on_content_changes_only(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    nix_flake: Path,
    nix_calls: NixCallLog,  # noqa: F811
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    image = f'flake = "path:{nix_flake}{FLAKE_VM}"'
    daemon = daemon_factory(nix_config(kernel_tree, state, short_tmp / "ctl.sock", image))
    events = daemon.events(EVENTS)
    first = _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 1
    console = (state / "runs" / first["run_id"] / "console.log").read_text()
    assert f"Linux version {cloud_kernel.release}" in console
    assert "NIXPKGS_QEMU_KERNEL_test_node" in _record(state, first["run_id"])["environment"]

    before = len(nix_calls.calls())
    kernel_tree.replace_atomically(another_build(cloud_kernel.image.read_bytes(), 2))
    assert events.run_end()["outcome"] == "passed"
    assert nix_calls.calls()[before:] == []

    vm_nix = nix_flake / "vm.nix"
    subprocess.run(["touch", str(vm_nix)], check=True)
    _no_build_decision(events)
    vm_nix.write_text(vm_nix.read_text() + "# an edit\n")
    _passed_after_one_build(events, daemon)
    assert _builds(nix_calls) == 2
    events.close()


def test_once_builds_only_when_the_image_is_stale_and_exits_2_when_it_cannot(
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    nix_vm: Path,
    nix_calls: NixCallLog,  # noqa: F811
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    vm_nix = nix_vm / "vm.nix"
    config = tmp_path / "nixvmd.toml"
    config.write_text(nix_config(kernel_tree, state, short_tmp / "ctl.sock", f'nix_file = "{vm_nix}"'))

    def once() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "nixvmd.daemon.main", "--config", str(config), "--once"]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)

    first = once()
    assert first.returncode == 0, first.stderr
    assert _builds(nix_calls) == 1
    before = len(nix_calls.calls())
    again = once()
    assert again.returncode == 0, again.stderr
    assert nix_calls.calls()[before:] == []

    vm_nix.write_text(vm_nix.read_text().replace('hostName = "test-node";', 'hostName = "test-node"'))
    broken = once()
    assert broken.returncode == 2
    assert "syntax error" in broken.stderr
