"""The direct backend: QEMU boots the kernel with nixvmd's own initramfs; no image to build."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import ImageBuildError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.initramfs import (
    Initramfs,
    InitramfsSpec,
    build_initramfs,
    spec_digest,
    write_run_initrd,
)
from nixvmd.image.modules import module_name, resolve_modules_dir
from nixvmd.vm.cmdline import BootSpec, Launch, MachineSpec, direct_command, host_root_options, kernel_cmdline
from nixvmd.vm.virtiofsd import TAG, VIRTIOFSD, host_root_launch
from nixvmd.watch.kernel_image import KernelImage, release_of

# What the guest needs to mount the shared host root (virtiofs) with a writable overlay on
# top, and the file systems fstests usually tests; each is skipped when built in.
HOST_ROOT_MODULES = ("fuse", "virtiofs", "overlay")
TEST_FS_MODULES = ("xfs", "ext4")


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
    """The initramfs a run of `kernel` boots, with the modules the host root share needs."""
    share = config.image.share_host_root
    extra = (*HOST_ROOT_MODULES, *_available(config, kernel, TEST_FS_MODULES)) if share else ()
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
) -> tuple[Launch, Initramfs]:
    """The QEMU launch for one run: cached base initramfs plus this run's job, written to `initrd`."""
    share = config.image.share_host_root
    if share:
        _check_host_root_share()
    base = build_initramfs(_run_spec(config, kernel), cache_dir)
    if share:
        job = dataclasses.replace(job, env=(*job.env, ("NIXVMD_HOST_ROOT", TAG)))
    boot = BootSpec(
        kernel.bootable,
        write_run_initrd(base, job, initrd),
        kernel_cmdline(config.kernel.cmdline, machine.accel, gdb=machine.gdb is not None),
    )
    if not share:
        return Launch(tuple(direct_command(config.vm.qemu, machine, boot))), base
    if machine.sockets is None:
        raise ImageBuildError("image.share_host_root needs a VM nixvmd talks to (not a sealed one)")
    sockets = machine.sockets.qmp.parent
    with_fs = dataclasses.replace(
        machine, extra=(*host_root_options(sockets / "virtiofs", machine.memory, TAG), *machine.extra)
    )
    return Launch(tuple(host_root_launch(direct_command(config.vm.qemu, with_fs, boot), sockets))), base


def _check_host_root_share() -> None:
    if not os.access(VIRTIOFSD, os.X_OK):
        raise ImageBuildError(
            f"image.share_host_root needs {VIRTIOFSD}; "
            "install qemu-system-common or set share_host_root = false"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "image.share_host_root needs root (virtiofsd and the read-only bind mount of /); "
            "run nixvmd as root or set share_host_root = false"
        )


def _available(config: Config, kernel: KernelImage, names: tuple[str, ...]) -> tuple[str, ...]:
    """The modules of `names` the kernel's modules tree has (the others are built in, or absent)."""
    if config.kernel.modules_dir is None:
        return ()
    root = resolve_modules_dir(config.kernel.modules_dir, release_of(kernel.version))
    present = {module_name(p) for p in (root / "kernel" / "fs").rglob("*.ko")}
    return tuple(n for n in names if n in present)
