"""A full state_dir end to end (issue 8): a real daemon, QEMU (TCG) and Debian's kernel, state_dir on a
small tmpfs the test mounts and fills. Each fault is said in one sentence naming the path and the free
space, the daemon keeps serving, no partial file stays, and the next change runs once space is back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, Tmpfs, direct_config

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
Mount = Callable[..., Tmpfs]
CTL = [sys.executable, "-m", "nixvmd.ctl.main"]
STATE_SIZE = 256 << 20  # room for the kernel snapshot, the initrds, the 64M scratch disk and the results


def _files(root: Path) -> list[str]:
    """Every file and directory under `root`, relative: partial files would show here."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _ctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, "--socket", str(daemon.socket), *args], capture_output=True, text=True, timeout=60
    )


def _logs(daemon: DaemonProcess) -> str:
    return "\n".join(daemon.call("logs")["lines"])


def _run_json(state: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return data


def test_startup_on_a_full_state_dir_says_so_keeps_serving_and_runs_once_space_is_back(
    small_tmpfs: Mount,
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    fs = small_tmpfs(state, STATE_SIZE)
    fs.fill(leave=4 << 20)  # the 14 MiB kernel snapshot cannot fit
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)

    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    status = daemon.status()
    assert status["state"] == "error"
    assert status["kernel"] is None and status["current"] is None and status["last_run"] is None
    sentence = status["space_error"]
    assert sentence.startswith(f"no space left on {state} (tmpfs): writing the kernel snapshot {state}/")
    assert "needs 14 MiB, 4.0 MiB free; free some space or move daemon.state_dir" in sentence
    assert sentence in _logs(daemon)
    assert "Traceback" not in daemon.text_log()
    assert _files(state) == ["filler", "kernels"]
    shown = _ctl(daemon, "status")
    assert shown.returncode == 0 and f"disk:     {sentence}" in shown.stdout
    refused = _ctl(daemon, "run")
    assert refused.returncode != 0 and "no space left on" in refused.stderr
    assert _files(state) == ["filler", "kernels"]

    fs.empty()
    events = daemon.events()
    kernel_tree.write_in_place(image)
    run = events.run_end()
    assert run["outcome"] == "passed", daemon.text_log()
    status = daemon.status()
    assert status["state"] == "idle" and status["space_error"] is None
    assert status["kernel"]["version"].startswith(cloud_kernel.release)
    assert "state_dir has room again" in _logs(daemon)
    events.close()


def test_a_full_disk_refuses_a_new_kernel_then_a_run_with_the_sentence_and_the_next_change_runs(
    small_tmpfs: Mount,
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    fs = small_tmpfs(state, STATE_SIZE)
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    assert daemon.status()["state"] == "idle"
    events = daemon.events()
    image = cloud_kernel.image.read_bytes()

    # A kernel written while the disk is full: refused for space, said in status, no partial snapshot.
    fs.fill(leave=1 << 20)
    kernel_tree.write_in_place(image)
    refused = events.wait_for(lambda e: e["event"] == "kernel", 30)
    assert refused["ok"] is False
    assert refused["error"].startswith(f"no space left on {state} (tmpfs): writing the kernel snapshot ")
    assert "needs 14 MiB, 1.0 MiB free;" in refused["error"]
    status = daemon.status()
    assert status["state"] == "error" and status["space_error"] == refused["error"]
    assert status["kernel"] is None and status["current"] is None
    assert [p.name for p in (state / "kernels").iterdir()] == []

    # Room for the snapshot but not for what the run may write: `nixvmctl run` takes the kernel,
    # and the run is refused before anything boots, with what it needs and what is free.
    fs.empty()
    fs.fill(leave=40 << 20)
    assert _ctl(daemon, "run").returncode == 0
    run = events.run_end()
    assert run["outcome"] == "error"
    reason = run["reason"]
    assert reason.startswith(f"not enough space on {state} (tmpfs) for a run in {state}: it may write ")
    assert "disk growth 64 MiB" in reason and " MiB free; free some space, make vm.disks smaller" in reason
    record = _run_json(state, run["run_id"])
    assert record["outcome"] == "error" and record["reason"] == reason
    run_files = sorted(p.name for p in (state / "runs" / run["run_id"]).iterdir())
    assert run_files == ["junit.xml", "output.log", "run.json"]  # nothing booted: no initrd, no console
    assert [p.suffix for p in (state / "kernels").iterdir()] == [".bzImage"]
    status = daemon.status()
    assert status["state"] == "error" and status["space_error"] == reason
    assert status["last_run"]["outcome"] == "error"
    assert not any(".tmp" in name for name in _files(state))

    # Space comes back: the next change runs normally and the error is gone.
    fs.empty()
    kernel_tree.write_in_place(image)
    run = events.run_end()
    assert run["outcome"] == "passed", daemon.text_log()
    status = daemon.status()
    assert status["state"] == "idle" and status["space_error"] is None
    assert "Traceback" not in daemon.text_log()
    events.close()


def test_a_guest_write_that_finds_the_host_disk_full_ends_the_run_as_error_naming_the_image(
    small_tmpfs: Mount,
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    fs = small_tmpfs(state, STATE_SIZE)
    # ttyS0 is the command's stdin before it says fill-now: the go typed later cannot be lost.
    command = (
        "exec sh -c 'echo fill-now; read go; "
        "dd if=/dev/zero of=/dev/vda bs=1M count=60 conv=fsync; echo dd-done' </dev/ttyS0 >/dev/ttyS0 2>&1"
    )
    config = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", command=command)
    daemon = daemon_factory(config)
    events = daemon.events(["run", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "fill-now", 240)

    # Something else fills the disk while the guest runs; then the guest writes to its scratch disk.
    fs.fill(leave=0)
    with Client(daemon.socket) as client:
        console = client.open_stream("console")
        console.send({"input": "go\r"})
        run = events.run_end()
    assert run["outcome"] == "error", daemon.text_log()
    image = state / "runs" / run["run_id"] / "scratch" / "disks" / "scratch.img"
    assert run["reason"].startswith(
        f"no space left on {state} (tmpfs): the guest's write into the disk image {image} failed with "
    )
    assert run["reason"].endswith(" free; free some space or move daemon.state_dir")
    status = daemon.status()
    assert status["state"] == "error" and status["space_error"]
    assert status["last_run"]["reason"] == run["reason"]
    assert not any(".tmp" in name or name.endswith("initrd.cpio") for name in _files(state))
    assert "Traceback" not in daemon.text_log()
    events.close()


def test_no_inode_left_for_a_run_directory_is_reported_and_the_daemon_carries_on(
    small_tmpfs: Mount,
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    # Inodes for the root, kernels/ and the snapshot: none left for runs/.
    small_tmpfs(state, STATE_SIZE, inodes=3)
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    events = daemon.events(["state"])
    if daemon.status()["state"] != "error":  # subscribed first: the change cannot slip by unseen
        events.wait_for(lambda e: e["state"] == "error", 30)
    status = daemon.status()
    sentence = status["space_error"]
    assert sentence.startswith(f"no space left on {state} (tmpfs): creating the run store {state}/runs ")
    assert status["current"] is None and status["last_run"] is None
    assert status["kernel"]["version"].startswith(cloud_kernel.release)
    names = _files(state)
    assert len(names) == 2 and names[0] == "kernels" and names[1].endswith(".bzImage")
    log = daemon.text_log()
    assert "Traceback" not in log and "never retrieved" not in log and "failed inside nixvmd" not in log
    events.close()
