"""The direct backend: QEMU boots the kernel with nixvmd's own initramfs; no image to build."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nixvmd.config.schema import Config, Network
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.dev_tree import (
    kernel_modules_root,
    require_virtiofsd,
    share_modules,
    sockets_of,
    tree_share,
)
from nixvmd.image.initramfs import (
    Initramfs,
    InitramfsSpec,
    build_initramfs,
    spec_digest,
    write_run_initrd,
)
from nixvmd.image.modules import module_name, resolve_modules_dir
from nixvmd.vm.cmdline import BootSpec, Launch, MachineSpec, direct_command, host_root_options, kernel_cmdline
from nixvmd.vm.ssh import SshKeys, guest_sshd_env, ssh_keys
from nixvmd.vm.virtiofsd import TAG, Export, host_root_export, virtiofs_launch
from nixvmd.watch.kernel_image import KernelImage, release_of

# What the guest needs to mount the shared host root (virtiofs) with a writable overlay on
# top, and the file systems fstests usually tests; each is skipped when built in.
HOST_ROOT_MODULES = ("fuse", "virtiofs", "overlay")
TEST_FS_MODULES = ("xfs", "ext4")
# vm.network = "user": the NIC (its failover dependencies come along).
NETWORK_MODULES = ("virtio_net",)


def initramfs_spec(config: Config, kernel: KernelImage, extra_modules: tuple[str, ...] = ()) -> InitramfsSpec:
    """What the initramfs for `kernel` is made of."""
    release = release_of(kernel.version)
    modules_root = None
    if config.kernel.modules_dir is not None:
        modules_root = resolve_modules_dir(config.kernel.modules_dir, release)
    return InitramfsSpec(
        busybox=config.image.busybox,
        release=release,
        modules_root=modules_root,
        extra_modules=extra_modules if modules_root is not None else (),
        user_modules=config.kernel.modules,
    )


def _run_spec(config: Config, kernel: KernelImage) -> InitramfsSpec:
    """The initramfs a run of `kernel` boots, with the modules the host root and dev tree shares need."""
    share = config.image.share_host_root
    extra = (*HOST_ROOT_MODULES, *_available(config, kernel, TEST_FS_MODULES)) if share else ()
    extra += tuple(m for m in share_modules(config, kernel_modules_root(config, kernel)) if m not in extra)
    if config.vm.network is Network.USER:
        extra = (*extra, *NETWORK_MODULES)
    return initramfs_spec(config, kernel, extra)


def sealed_spec(config: Config, kernel: KernelImage) -> InitramfsSpec:
    """The initramfs of a VM with no host root to share (a Nix builder's), test file systems' modules too."""
    return initramfs_spec(config, kernel, _available(config, kernel, TEST_FS_MODULES))


def image_digest(config: Config, kernel: KernelImage) -> str:
    """What identifies the guest image a run of `kernel` would boot (nothing is built).

    ImageBuildError when the modules tree for the kernel cannot be found.
    """
    return spec_digest(_run_spec(config, kernel))


def prepare_direct(
    config: Config,
    kernel: KernelImage,
    job: GuestJob,
    machine: MachineSpec,
    initrd: Path,
    cache_dir: Path,
    ssh: SshKeys | None = None,
) -> tuple[Launch, Initramfs]:
    """The QEMU launch for one run: cached base initramfs plus this run's job, written to `initrd`.

    With vm.network = "user" the agent brings the guest's network up; with `ssh` too (the
    host root shared: its sshd is the host's) it starts sshd with those keys.
    """
    share = config.image.share_host_root
    if share:
        require_virtiofsd("image.share_host_root", "set share_host_root = false")
    base = build_initramfs(_run_spec(config, kernel), cache_dir)
    if share:
        job = dataclasses.replace(job, env=(*job.env, ("NIXVMD_HOST_ROOT", TAG)))
    if config.vm.network is Network.USER:
        sshd = guest_sshd_env(ssh) if share and ssh is not None else ()
        job = dataclasses.replace(job, env=(*job.env, ("NIXVMD_NETWORK", "user"), *sshd))
    boot = BootSpec(
        kernel.bootable,
        write_run_initrd(base, job, initrd),
        kernel_cmdline(config.kernel.cmdline, machine.accel, gdb=machine.gdb is not None),
    )
    modules_root = kernel_modules_root(config, kernel)
    tree = tree_share(config, machine, modules_root, memory=None if share else machine.memory)
    if not share and tree is None:
        return Launch(tuple(direct_command(config.vm.qemu, machine, boot))), base
    sockets = sockets_of(machine)
    options: list[str] = []
    exports: list[Export] = []
    if share:
        options += host_root_options(sockets / "virtiofs", machine.memory, TAG)
        exports.append(host_root_export(sockets))
    if tree is not None:
        options += tree.options
        exports += tree.exports
    with_fs = dataclasses.replace(machine, extra=(*options, *machine.extra))
    argv = direct_command(config.vm.qemu, with_fs, boot)
    return Launch(tuple(virtiofs_launch(argv, exports) if exports else argv)), base


def _available(config: Config, kernel: KernelImage, names: tuple[str, ...]) -> tuple[str, ...]:
    """The modules of `names` the kernel's modules tree has (the others are built in, or absent)."""
    if config.kernel.modules_dir is None:
        return ()
    root = resolve_modules_dir(config.kernel.modules_dir, release_of(kernel.version))
    present = {module_name(p) for p in (root / "kernel" / "fs").rglob("*.ko")}
    return tuple(n for n in names if n in present)


def guest_ssh_keys(config: Config) -> SshKeys | None:
    """nixvmd's ssh keys (made the first time) when the guest runs the host's sshd, else None."""
    if config.vm.network is Network.USER and config.image.share_host_root:
        return ssh_keys(config.daemon.state_dir)
    return None
