"""xfstests.dev_tree's share: the kind chosen from the kernel, QEMU's options, the direct launch, the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config, DevTreeShare
from nixvmd.errors import ImageBuildError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.dev_tree import share_kind, tree_share
from nixvmd.image.direct import prepare_direct
from nixvmd.image.nix_launch import runner_shares_memory
from nixvmd.suite.xfstests.suite import XfstestsSuite
from nixvmd.vm.cmdline import Accelerator, MachineSpec, Sockets
from nixvmd.watch.kernel_image import read_kernel_image

SAMPLE = Path("/var/cache/nixvmd/kernels/debian-cloud")
needs_sample = pytest.mark.skipif(not (SAMPLE / "vmlinuz").is_file(), reason="no sample kernel")


def _modules_tree(root: Path, modules: dict[str, str], builtin: tuple[str, ...] = ()) -> Path:
    """A lib/modules/<release> tree: .ko files whose .modinfo names their dependencies."""
    root.mkdir(parents=True)
    for path, depends in modules.items():
        ko = root / "kernel" / path
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(b"\0license=GPL\0depends=" + depends.encode() + b"\0")
    (root / "modules.builtin").write_text("".join(f"kernel/{b}\n" for b in builtin))
    return root


def _config(tmp_path: Path, xfstests: str = "", image: str = "", kind: str = "xfstests") -> Config:
    tree = tmp_path / "fstests"
    tree.mkdir(exist_ok=True)
    (tree / "check").write_text("#!/bin/bash\n")
    return parse_config(
        f'[kernel]\ntree = "{SAMPLE}"\nimage = "vmlinuz"\nmodules_dir = "modules"\n[image]\n{image}\n'
        f'[suite]\nkind = "{kind}"\n[xfstests]\ndir = "/opt/fstests"\ndev_tree = "fstests"\n{xfstests}\n',
        name="nixvmd.toml",
        base=tmp_path,
    )


def _machine(tmp_path: Path) -> MachineSpec:
    sockets = Sockets(tmp_path / "s" / "qmp", tmp_path / "s" / "agent")
    return MachineSpec(Accelerator.TCG, 768 << 20, 2, sockets, tmp_path / "console.log")


def test_auto_takes_virtiofs_when_the_kernel_has_it_else_9p_and_says_when_it_has_neither(
    tmp_path: Path,
) -> None:
    both = _modules_tree(
        tmp_path / "both",
        {
            "fs/fuse/virtiofs.ko": "fuse",
            "fs/fuse/fuse.ko": "",
            "net/9p/9pnet_virtio.ko": "",
            "fs/9p/9p.ko": "",
        },
    )
    assert share_kind(DevTreeShare.AUTO, both) is DevTreeShare.VIRTIOFS
    nine = _modules_tree(
        tmp_path / "9p", {"net/9p/9pnet_virtio.ko": "9pnet", "net/9p/9pnet.ko": ""}, ("fs/9p/9p.ko",)
    )
    assert share_kind(DevTreeShare.AUTO, nine) is DevTreeShare.NINEP
    builtin = _modules_tree(tmp_path / "builtin", {}, ("fs/fuse/fuse.ko", "fs/fuse/virtiofs.ko"))
    assert share_kind(DevTreeShare.AUTO, builtin) is DevTreeShare.VIRTIOFS
    neither = _modules_tree(tmp_path / "neither", {"fs/xfs/xfs.ko": ""})
    with pytest.raises(ImageBuildError, match="the kernel has neither virtiofs nor 9p"):
        share_kind(DevTreeShare.AUTO, neither)
    assert share_kind(DevTreeShare.AUTO, None) is DevTreeShare.VIRTIOFS  # nothing to ask
    assert share_kind(DevTreeShare.NINEP, both) is DevTreeShare.NINEP  # the user's word


def test_a_9p_share_is_qemus_own_read_only_export_of_the_tree(tmp_path: Path) -> None:
    config = _config(tmp_path, 'dev_tree_share = "9p"')
    share = tree_share(config, _machine(tmp_path), None, memory=768 << 20)
    assert share is not None and share.exports == ()
    assert share.options == (
        "-virtfs",
        f"local,path={tmp_path / 'fstests'},mount_tag=nixvmd-fstests,security_model=none,readonly=on",
    )


def test_a_virtiofs_share_has_its_own_virtiofsd_and_shares_memory_only_when_asked(tmp_path: Path) -> None:
    config = _config(tmp_path, 'dev_tree_share = "virtiofs"')
    share = tree_share(config, _machine(tmp_path), None, memory=768 << 20)
    assert share is not None
    (export,) = share.exports
    assert (export.source, export.socket) == (tmp_path / "fstests", tmp_path / "s" / "fstests.sock")
    assert "memory-backend-memfd,id=mem,size=768M,share=on" in share.options
    assert "vhost-user-fs-pci,chardev=nixvmd-fstests,tag=nixvmd-fstests" in share.options
    again = tree_share(config, _machine(tmp_path), None, memory=None)
    assert again is not None and not any("memory-backend" in o for o in again.options)


def test_only_fstests_runs_get_the_tree(tmp_path: Path) -> None:
    assert tree_share(_config(tmp_path, kind="command"), _machine(tmp_path), None, memory=1 << 30) is None


def test_the_job_asks_the_guest_to_mount_the_tree_only_when_there_is_one(tmp_path: Path) -> None:
    with_tree = dict(XfstestsSuite(_config(tmp_path).xfstests, tmp_path).job().env)
    assert with_tree["NIXVMD_XFS_DEV_TREE"] == "nixvmd-fstests"
    assert with_tree["NIXVMD_XFS_DIR"] == "/opt/fstests"
    plain = parse_config('[suite]\nkind = "xfstests"\n', name="nixvmd.toml", base=tmp_path)
    assert "NIXVMD_XFS_DEV_TREE" not in dict(XfstestsSuite(plain.xfstests, tmp_path).job().env)


def test_a_runner_with_its_own_shared_memory_keeps_it(tmp_path: Path) -> None:
    runner = tmp_path / "run-vm"
    runner.write_text(
        "exec qemu -object memory-backend-memfd,id=mem,size=1024M,share=on -numa node,memdev=mem\n"
    )
    assert runner_shares_memory(runner)
    runner.write_text("exec qemu -virtfs local,path=/nix/store,mount_tag=nix-store\n")
    assert not runner_shares_memory(runner)
    assert not runner_shares_memory(tmp_path / "missing")


def _direct(tmp_path: Path, config: Config) -> tuple[list[str], tuple[str, ...]]:
    kernel = read_kernel_image(SAMPLE / "vmlinuz")
    job = GuestJob("xfstests", "true")
    launch, base = prepare_direct(
        config, kernel, job, _machine(tmp_path), tmp_path / "initrd", tmp_path / "cache"
    )
    return list(launch.argv), tuple(Path(m).name.split(".ko")[0] for m in base.modules)


@needs_sample
def test_the_direct_backend_shares_the_tree_alone_or_beside_the_host_root(tmp_path: Path) -> None:
    argv, modules = _direct(tmp_path, _config(tmp_path))  # auto: the cloud kernel has virtiofs, no 9p
    assert argv[0] == "unshare" and str(tmp_path / "fstests") in argv
    qemu = argv[argv.index("qemu-system-x86_64") :]
    assert "vhost-user-fs-pci,chardev=nixvmd-fstests,tag=nixvmd-fstests" in qemu
    assert qemu.count("-numa") == 1
    assert {"fuse", "virtiofs"} <= set(modules)

    argv, modules = _direct(tmp_path, _config(tmp_path, image="share_host_root = true"))
    qemu = argv[argv.index("qemu-system-x86_64") :]
    assert qemu.count("-numa") == 1  # one shared memory for both devices
    assert "vhost-user-fs-pci,chardev=vfs,tag=hostroot" in qemu
    assert "vhost-user-fs-pci,chardev=nixvmd-fstests,tag=nixvmd-fstests" in qemu
    assert argv[: argv.index("qemu-system-x86_64")].count("--") == 2  # unshare's and the exports' end


@needs_sample
def test_9p_for_a_kernel_without_it_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"module 9pnet_virtio is not in .* nor built into the kernel"):
        _direct(tmp_path, _config(tmp_path, 'dev_tree_share = "9p"'))
