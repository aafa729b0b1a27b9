"""Room in state_dir for a run: the check before it starts, and a guest write that found none.

A run writes into daemon.state_dir: the kernel snapshot (when not taken yet), the initrd,
its sparse disk images (fresh for each run, in its scratch dir), the console log and the results. `run_needs`
bounds each; `check_run_space` refuses the run with a StateSpaceError (so it ends `error`
saying how much is needed and free) when a file system holding them has less free space
than their sum. `guest_disk_full` is the same sentence for QEMU's report that a guest
write into a disk image found the host full anyway (something else filled it meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixvmd.config.schema import Backend, Config, SuiteKind
from nixvmd.config.units import format_size
from nixvmd.errors import StateSpaceError
from nixvmd.results.space import existing, file_system, free_bytes, space_error
from nixvmd.results.store import disks_dir
from nixvmd.suite.xfstests.disk import MAX_RESULT_BYTES
from nixvmd.vm.cmdline import Disk, drive_id
from nixvmd.watch.kernel_image import KernelImage

# console.log, qemu.log, output.log, run.json and junit.xml of one run together; a run's
# console is usually well under 1 MiB, this leaves room for a noisy kernel.
CONSOLE_BOUND = 32 << 20
# The base initramfs before one was ever built (Debian's cloud kernel's is about 2.3 MiB).
INITRD_GUESS = 8 << 20
ADVICE = "free some space, make {disks} smaller or move daemon.state_dir"
XFSTESTS_DISKS = "vm.disks or xfstests.test_size/scratch_size/results_size"


@dataclass(frozen=True)
class Need:
    """Up to `size` bytes a run may write under `where`, and what they are, in words."""

    what: str
    where: Path
    size: int


def run_needs(config: Config, kernel: KernelImage, run_dir: Path) -> list[Need]:
    """What a run of `config` with `kernel` may write into state_dir, item by item.

    The bound: need = snapshot + initrd + disk growth + console and results, where
      snapshot    = the kernel's size while its snapshot is not on disk (normally it is:
                    it was taken when the kernel was checked), else 0;
      initrd      = 2 * the largest cached base archive (a rebuilt base, plus the run's
                    own copy of it with the job), 2 * INITRD_GUESS before any was built;
                    the direct backend only (the nix backend's image lives in /nix/store);
      disk growth = the sum over vm.disks of (size - bytes its image in the run's disks
                    dir already has allocated, st_blocks * 512): every disk counts whole
                    before the run made it (disks are fresh per run). Sparse images grow
                    up to their size as the guest writes and QEMU stops the guest when the
                    host has no room for a write (werror=enospc), so no fraction of that is
                    safe to assume;
      results     = CONSOLE_BOUND, plus for xfstests the extracted RESULT_BASE, at most
                    min(MAX_RESULT_BYTES, xfstests.results_size).
    """
    state = config.daemon.state_dir
    needs = []
    if kernel.boot_path is not None and not kernel.boot_path.exists():
        needs.append(Need("kernel snapshot", kernel.boot_path.parent, kernel.size))
    if config.image.backend is Backend.DIRECT:
        needs.append(Need("initrd", run_dir, 2 * _largest_archive(state / "initramfs")))
    disks = disks_dir(run_dir)
    growth = sum(_unallocated(disks / d.file_name, d.size) for d in config.vm.disks if d.path is None)
    needs.append(Need("disk growth", disks, growth))
    results = CONSOLE_BOUND
    if config.suite.kind is SuiteKind.XFSTESTS:
        results += min(MAX_RESULT_BYTES, config.xfstests.results_size)
    needs.append(Need("console and results", run_dir, results))
    return [n for n in needs if n.size > 0]


def check_run_space(config: Config, kernel: KernelImage, run_dir: Path) -> None:
    """Refuse the run (StateSpaceError) when a file system lacks room for what it may write."""
    by_device: dict[int, list[Need]] = {}
    for need in run_needs(config, kernel, run_dir):
        by_device.setdefault(os.stat(existing(need.where)).st_dev, []).append(need)
    for needs in by_device.values():
        total = sum(n.size for n in needs)
        free = free_bytes(needs[0].where)
        if total > free:
            mount, kind = file_system(needs[0].where)
            parts = ", ".join(f"{n.what} {format_size(n.size)}" for n in needs)
            disks = XFSTESTS_DISKS if config.suite.kind is SuiteKind.XFSTESTS else "vm.disks"
            raise StateSpaceError(
                f"not enough space on {mount} ({kind}) for a run in {config.daemon.state_dir}: "
                f"it may write {format_size(total)} ({parts}), {format_size(free)} free; "
                + ADVICE.format(disks=disks),
                config.daemon.state_dir,
                free,
                total,
            )


def guest_disk_full(event: Mapping[str, Any], disks: Sequence[Disk], fallback: Path) -> StateSpaceError:
    """The error for QEMU's BLOCK_IO_ERROR with `nospace`: the disk image that found no room.

    `fallback` (state_dir) is named when the drive is not one of nixvmd's disks (a runner's own disk).
    """
    device = str(event.get("device", ""))
    path = next((d.path for i, d in enumerate(disks) if drive_id(i) == device), None)
    if path is None:
        return space_error(fallback, "the guest's write into a disk image under")
    return space_error(path, "the guest's write into the disk image")


def _largest_archive(cache_dir: Path) -> int:
    sizes = []
    if cache_dir.is_dir():
        for archive in cache_dir.glob("*.cpio"):
            try:
                sizes.append(archive.stat().st_size)
            except OSError:
                continue  # pruned meanwhile
    return max(sizes, default=INITRD_GUESS)


def _unallocated(image: Path, size: int) -> int:
    """How far the sparse image at `image` may still grow to reach `size` bytes."""
    try:
        st = image.stat()
    except OSError:
        return size
    if st.st_size != size:
        return size  # prepare_disks makes it anew
    return max(0, size - st.st_blocks * 512)
