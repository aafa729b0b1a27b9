"""xfstests.dev_tree with the nix backend end to end: an edited test runs with no Nix at all.

The fixture <nixpkgs/nixos> builds the runner once; its "NixOS" initrd is nixvmd's base
initramfs (the agent asks for its job with `hello`) with what a NixOS system with xfsprogs
would have: the virtiofs and xfs modules of the cloud kernel and the host's bash, mkfs.xfs,
blkid and xfs_db with their libraries. The stand-in fstests tree is the user's dev tree on
the host, shared over virtiofs at xfstests.dir; the nix_calls wrappers, first on the
daemon's PATH, count every Nix process.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.distribute.guest_programs import make_tree
from nixvmd.distribute.programs import find_program
from nixvmd.image.cpio import Entry, write_cpio
from nixvmd.image.initramfs import InitramfsSpec, build_initramfs
from nixvmd.image.modules import resolve_modules_dir
from nixvmd.vm.virtiofsd import VIRTIOFSD
from tests.conftest import DaemonProcess, KernelTree, SampleKernel
from tests.e2e.test_nix_backend import _record
from tests.e2e.test_xfstests import STANDIN
from tests.image.conftest import (  # noqa: F401  (fixtures used by name)
    NixCallLog,
    fixture_nix_path,
    nix_calls,
    vm_dir,
)

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0 or not Path(VIRTIOFSD).exists(), reason="virtiofs needs root"),
]

Start = Callable[[str], DaemonProcess]
GUEST_PROGRAMS = ("bash", "mkfs.xfs", "blkid", "xfs_db")
GUEST_DIR = "/opt/fstests"


def _tree_entries(root: Path) -> list[Entry]:
    """`root`'s files, directories and symlinks as cpio entries, parents first."""
    entries = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *sorted(files)]:
            path = Path(directory, name)
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                entries.append(Entry.symlink(rel, os.readlink(path)))
            elif stat.S_ISDIR(mode):
                entries.append(Entry.directory(rel))
            else:
                entries.append(Entry.file(rel, path.read_bytes(), stat.S_IMODE(mode)))
    return entries


@pytest.fixture(scope="session")
def fstests_initrd(cloud_kernel: SampleKernel, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The agent's initramfs with virtiofs and xfs, then the host's fstests programs over it."""
    spec = InitramfsSpec(
        busybox=Path("/bin/busybox"),
        release=cloud_kernel.release,
        modules_root=resolve_modules_dir(cloud_kernel.modules, cloud_kernel.release),
        extra_modules=("fuse", "virtiofs", "xfs"),
    )
    base = build_initramfs(spec, tmp_path_factory.mktemp("initramfs"))
    programs = tmp_path_factory.mktemp("programs") / "root"
    make_tree(tuple(find_program(p) for p in GUEST_PROGRAMS), programs)
    return gzip.compress(base.path.read_bytes() + write_cpio(_tree_entries(programs)), mtime=0)


def _config(
    tree: KernelTree, kernel: SampleKernel, vm_nix: Path, dev_tree: Path, state: Path, sock: Path
) -> str:
    return f"""
[kernel]
tree = "{tree.root}"
modules_dir = "{kernel.modules}"

[image]
backend = "nix"
nix_file = "{vm_nix}"

[vm]
accel = "tcg"
memory = "768M"
cpus = 1
boot_timeout = "120s"

[suite]
kind = "xfstests"
timeout = "10m"
resume_limit = 0

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"

[xfstests]
dir = "{GUEST_DIR}"
dev_tree = "{dev_tree}"
args = ["script/001"]
test_size = "320M"
scratch_size = "320M"
results_size = "64M"
"""


def test_an_edited_test_script_runs_in_the_next_vm_with_no_nix_process(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    vm_dir: Path,  # noqa: F811
    fixture_nix_path: str,  # noqa: F811
    fstests_initrd: bytes,
    nix_calls: NixCallLog,  # noqa: F811
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    (vm_dir / "initrd.cpio.gz").write_bytes(fstests_initrd)
    dev_tree = tmp_path / "xfstests-dev"
    shutil.copytree(STANDIN, dev_tree)
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = _config(kernel_tree, cloud_kernel, vm_dir / "vm.nix", dev_tree, state, short_tmp / "ctl.sock")
    daemon = daemon_factory(config)
    events = daemon.events(["run", "build"])
    first = events.run_end(timeout=600)
    assert first["outcome"] == "passed", daemon.text_log()
    builds = nix_calls.count("nix-build")
    assert builds == 1
    record = _record(state, first["run_id"])
    assert [(t["name"], t["status"]) for t in record["tests"]] == [("script/001", "pass")]
    assert "vhost-user-fs-pci" in record["environment"]["QEMU_OPTS"]
    console = (state / "runs" / first["run_id"] / "console.log").read_text(errors="replace")
    assert f"mounted at {GUEST_DIR}" in console

    before = len(nix_calls.calls())
    script = dev_tree / "tests" / "script" / "001"
    script.write_text(script.read_text().replace("as shipped", "edited on the host"))
    # The edit starts the run itself: dev_tree is the watched fstests tree (xfstests.on_change).
    second = events.run_end(timeout=600)
    assert second["run_id"] != first["run_id"]
    assert second["outcome"] == "failed", daemon.text_log()
    assert nix_calls.calls()[before:] == []
    rerun = _record(state, second["run_id"])
    assert rerun["cause"] == "tests/script/001 changed → script/001"
    assert rerun["narrowed_to"] == ["script/001"]
    (test,) = rerun["tests"]
    assert test["name"] == "script/001" and test["status"] == "fail"
    assert "+script/001 says: edited on the host" in test["message"]
    events.close()
