"""A vmcore for every crash (issue 13), end to end: `nixvmd --once`, QEMU (TCG) and Debian's kernel.

The guest panics (sysrq c). QEMU pauses it when panic=-1 reboots it, nixvmd dumps its
memory over QMP into runs/<id>/vmcore and then quits QEMU. The file's own header is read
here (kdump, flattened kdump or ELF) down to the VMCOREINFO the guest gave QEMU's
vmcoreinfo device. With a state_dir too small for the guest's memory, the dump is skipped
in one sentence and the run's record is whole.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.results.vmcore_file import read_vmcoreinfo
from tests.conftest import KernelTree, SampleKernel, Tmpfs, direct_config, run_once
from tests.git_trees import one_commit_tree

pytestmark = pytest.mark.vm

Mount = Callable[..., Tmpfs]
PANIC = "echo c > /proc/sysrq-trigger"


def _config(tree: KernelTree, kernel: SampleKernel, state: Path, sock: Path) -> str:
    """A command suite that panics the guest; 256M of guest memory keeps the dump small and quick."""
    text = direct_config(tree, kernel, state, sock, command=PANIC, timeout="5m")
    small = text.replace('memory = "512M"', 'memory = "256M"', 1)
    assert small != text
    return small


def _kdump_format() -> tuple[str, bytes]:
    """The kdump format nixvmd takes from this host's QEMU and the header it writes.

    QEMU 8.2 added kdump-raw-*; QEMU before it writes makedumpfile's flattened form only.
    """
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"version (\d+)\.(\d+)", version.stdout)
    assert found is not None, version.stdout
    if (int(found.group(1)), int(found.group(2))) >= (8, 2):
        return "kdump-raw-zlib", b"KDUMP   "
    return "kdump-zlib", b"makedumpfile\0"


def _crashed_run(
    tmp_path: Path, tree: KernelTree, kernel: SampleKernel, state: Path, sock: Path
) -> tuple[dict[str, Any], str]:
    tree.write_in_place(kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    config.write_text(_config(tree, kernel, state, sock))
    done = run_once(config, "--json", timeout=300)
    assert done.returncode == 1, done.stderr
    record: dict[str, Any] = json.loads(done.stdout)
    assert record["outcome"] == "crashed"
    assert record["reason"].startswith("kernel panic: ") and "sysrq triggered crash" in record["reason"]
    return record, done.stderr


def test_a_panicked_guest_leaves_a_vmcore_with_its_vmcoreinfo(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    commit = one_commit_tree(kernel_tree.root)  # the build output stays untracked: a clean tree
    record, _ = _crashed_run(tmp_path, kernel_tree, cloud_kernel, state, short_tmp / "c.sock")
    run_dir = state / "runs" / record["id"]
    vmcore = run_dir / "vmcore"

    assert record["git"] == {"commit": commit, "dirty": False}  # a crashed run names its commit too

    kdump, header = _kdump_format()
    assert record["vmcore"] == {"path": str(vmcore), "size": vmcore.stat().st_size, "format": kdump}
    assert "vmcore_note" not in record
    assert sorted(p.name for p in run_dir.iterdir() if "vmcore" in p.name) == ["vmcore"]  # no partial file
    head = vmcore.read_bytes()[:16]
    assert head.startswith(header), head
    info = read_vmcoreinfo(vmcore)
    assert info.release == cloud_kernel.release
    assert info.info["PAGESIZE"] == "4096"
    # A dump far smaller than the guest: kdump leaves zero pages out and compresses the rest.
    assert vmcore.stat().st_size < 256 << 20

    shown = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(tmp_path / "nixvmd.toml"), "dump"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{kdump}, Linux {cloud_kernel.release})" in shown.stdout
    assert f"crash <vmlinux> {vmcore}" in shown.stdout
    assert f"{kernel_tree.root}/vmlinux does not exist" in shown.stdout


def test_a_state_dir_without_room_for_the_dump_skips_it_and_keeps_the_record(
    small_tmpfs: Mount, kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    small_tmpfs(
        state, 160 << 20
    )  # the kernel snapshot, the initramfs and the run fit; 256M of guest does not
    record, log = _crashed_run(tmp_path, kernel_tree, cloud_kernel, state, short_tmp / "c.sock")
    run_dir = state / "runs" / record["id"]

    sentence = record["vmcore_note"]
    assert re.fullmatch(
        rf"vmcore skipped: 257 MiB needed, [\d.]+ MiB free on {re.escape(str(state))}", sentence
    )
    assert sentence in log
    assert "vmcore" not in record
    assert not [p for p in run_dir.iterdir() if "vmcore" in p.name]
    on_disk = json.loads((run_dir / "run.json").read_text())
    assert on_disk["outcome"] == "crashed" and on_disk["reason"] == record["reason"]
    assert (run_dir / "console.log").stat().st_size > 0
