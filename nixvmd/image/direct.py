"""The direct backend: QEMU boots the kernel with nixvmd's own initramfs; no image to build."""

from __future__ import annotations

from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.initramfs import Initramfs, InitramfsSpec, build_initramfs, write_run_initrd
from nixvmd.image.modules import resolve_modules_dir
from nixvmd.vm.cmdline import BootSpec, Launch, MachineSpec, direct_command, kernel_cmdline
from nixvmd.watch.kernel_image import KernelImage, release_of


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


def prepare_direct(
    config: Config,
    kernel: KernelImage,
    job: GuestJob,
    machine: MachineSpec,
    run_dir: Path,
    cache_dir: Path,
) -> tuple[Launch, Initramfs]:
    """The QEMU launch for one run: cached base initramfs plus this run's job."""
    base = build_initramfs(initramfs_spec(config, kernel), cache_dir)
    initrd = write_run_initrd(base, job, run_dir / "initrd.cpio")
    boot = BootSpec(
        kernel.bootable, initrd, kernel_cmdline(config.kernel.cmdline, emulated=machine.accel == "tcg")
    )
    return Launch(tuple(direct_command(config.vm.qemu, machine, boot))), base
