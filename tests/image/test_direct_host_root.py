"""The direct backend with image.share_host_root: modules, job and launch, built without QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.direct import guest_ssh_keys, prepare_direct
from nixvmd.vm.cmdline import Accelerator, MachineSpec, Sockets
from nixvmd.watch.kernel_image import read_kernel_image

SAMPLE = Path("/var/cache/nixvmd/kernels/debian-cloud")

pytestmark = pytest.mark.skipif(not (SAMPLE / "vmlinuz").is_file(), reason="no sample kernel")


def prepare(tmp_path: Path, share: bool, extra: str = "") -> tuple[list[str], str, tuple[str, ...]]:
    """The direct launch of the sample kernel: QEMU's argv, the run's job as the initrd carries it,
    and the initramfs' modules (`extra`: more config text; vm.network is passed to the spec)."""
    config = parse_config(
        f'[kernel]\ntree = "{SAMPLE}"\nimage = "vmlinuz"\nmodules_dir = "modules"\n'
        f"[image]\nshare_host_root = {'true' if share else 'false'}\n{extra}",
        name="nixvmd.toml",
        base=tmp_path,
    )
    kernel = read_kernel_image(SAMPLE / "vmlinuz")
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    spec = MachineSpec(
        Accelerator.TCG, 768 << 20, 2, sockets, tmp_path / "console.log", network=config.vm.network
    )
    launch, base = prepare_direct(
        config,
        kernel,
        GuestJob("command", "true"),
        spec,
        tmp_path / "initrd.cpio",
        tmp_path / "cache",
        guest_ssh_keys(config),
    )
    job = (tmp_path / "initrd.cpio").read_bytes()[base.path.stat().st_size :]
    return list(launch.argv), job.decode(errors="replace"), base.modules


def test_sharing_the_host_root_adds_virtiofs_the_modules_and_the_wrapper(tmp_path: Path) -> None:
    argv, job, modules = prepare(tmp_path, share=True)
    assert argv[0] == "unshare"
    qemu = argv[argv.index("qemu-system-x86_64") :]
    assert "vhost-user-fs-pci,chardev=vfs,tag=hostroot" in qemu
    assert "memory-backend-memfd,id=mem,size=768M,share=on" in qemu
    assert f"socket,id=vfs,path={tmp_path / 'virtiofs'}" in qemu
    names = {Path(m).name.split(".ko")[0] for m in modules}
    assert {"fuse", "virtiofs", "overlay", "xfs"} <= names
    assert "NIXVMD_HOST_ROOT=hostroot" in job


def test_without_the_share_nothing_changes(tmp_path: Path) -> None:
    argv, job, modules = prepare(tmp_path, share=False)
    assert argv[0] == "qemu-system-x86_64"
    assert not any("vhost-user-fs" in a for a in argv)
    assert "NIXVMD_HOST_ROOT" not in job
    assert not any("virtiofs" in m for m in modules)
