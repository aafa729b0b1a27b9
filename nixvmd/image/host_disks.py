"""The user's own disks (vm.disks with `path`): image files and host block devices, attached as they are.

nixvmd never creates, resizes or removes such a disk: it is attached by its own path (never
linked into a run's workspace, whose removal therefore cannot reach it), in its `format`
(`disk_format` decides one when the user gave none). Before a run it is refused, in one sentence, when
it does not exist, is neither a regular file nor a block device, cannot be opened as the guest
needs it (read-write, or read-only with `readonly`), or is a block device the host uses: mounted
(/proc/self/mountinfo, by device number or mount source) or held, itself or a partition of it,
by device-mapper or md (sysfs `holders/`), or claimed by the kernel otherwise (an exclusive
open fails with EBUSY). `sysfs` and `mountinfo` are parameters so tests can hand in their own.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import DiskConfig, DiskFormat
from nixvmd.errors import HostDeviceError

QCOW2_MAGIC = b"QFI\xfb"
SYSFS = Path("/sys")
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class HostDisk:
    """A user's disk checked for a run: its path, QEMU format and whether the guest may write it."""

    path: Path
    format: DiskFormat | None  # None: QEMU probes it (see `disk_format`)
    readonly: bool


def check_host_disk(disk: DiskConfig, *, sysfs: Path = SYSFS, mountinfo: Path = MOUNTINFO) -> HostDisk:
    """`disk` (one with a path) as it may be attached now; HostDeviceError says why it may not."""
    assert disk.path is not None, f"disk {disk.name} has no path"
    path = disk.path
    where = f"vm.disks {disk.name!r}: {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise HostDeviceError(f"{where} does not exist; nixvmd attaches a path, never creates one") from None
    except OSError as exc:
        raise HostDeviceError(f"{where} cannot be looked at: {exc.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        _refuse_used_device(where, st.st_rdev, sysfs, mountinfo)
    elif not stat.S_ISREG(st.st_mode):
        raise HostDeviceError(f"{where} is neither an image file nor a block device")
    block = stat.S_ISBLK(st.st_mode)
    head = _first_bytes(where, path, disk.readonly, block)
    return HostDisk(path, disk_format(disk, block, head), disk.readonly)


def disk_format(disk: DiskConfig, block: bool, head: bytes) -> DiskFormat | None:
    """The format QEMU opens the user's `disk` in, `head` its first bytes; None: QEMU probes it.

    The user's `format` when given. Else never what the guest could have written: a block
    device is raw (a disk or partition, as QEMU users expect); a file that starts as qcow2
    is qcow2 (a guest cannot make it so: see below), a read-only file raw. A writable file
    that does not start as qcow2 gets no format: QEMU probes it and, as a probed raw image,
    refuses the guest a write that would make its first sector another format's header.
    Had nixvmd said "raw", the guest could write a qcow2 header (a backing file naming any
    host file) and the next run would open it as qcow2. `format = "raw"` lifts that guard.
    """
    if disk.format is not None:
        return disk.format
    if block:
        return DiskFormat.RAW
    if head == QCOW2_MAGIC:
        return DiskFormat.QCOW2
    return DiskFormat.RAW if disk.readonly else None


def _first_bytes(where: str, path: Path, readonly: bool, block: bool) -> bytes:
    """Open `path` as the guest will use it (an exclusive open for a device) and read its first bytes."""
    flags = os.O_RDONLY if readonly else os.O_RDWR
    if block:
        flags |= os.O_EXCL  # on a block device: fails with EBUSY while the kernel holds it
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise HostDeviceError(
                f"{where} is in use on the host (mounted, swap, or held by another driver); "
                "unmount or release it first"
            ) from None
        how = "read" if readonly else "read and write"
        hint = "" if readonly else " (or set readonly = true if the guest need not write it)"
        raise HostDeviceError(
            f"{where} cannot be opened to {how}: {exc.strerror}; give your user access to it{hint}"
        ) from None
    try:
        return os.pread(fd, len(QCOW2_MAGIC), 0)
    finally:
        os.close(fd)


def _refuse_used_device(where: str, rdev: int, sysfs: Path, mountinfo: Path) -> None:
    """HostDeviceError when the device numbered `rdev`, or a partition of it, is mounted or held."""
    node = (sysfs / "dev" / "block" / f"{os.major(rdev)}:{os.minor(rdev)}").resolve()
    mounted = _mounted(mountinfo)
    for name, number, holders_dir in _device_and_partitions(node, rdev):
        if number in mounted:
            what = "it" if number == rdev else f"its partition {name}"
            raise HostDeviceError(
                f"{where} is mounted on the host ({what} at {mounted[number]}); unmount it first, "
                "or the guest and the host would write one file system at once"
            )
        holders = sorted(p.name for p in _entries(holders_dir))
        if holders:
            what = "it" if number == rdev else f"its partition {name}"
            raise HostDeviceError(
                f"{where} is in use on the host ({what} is held by {', '.join(holders)}: device-mapper "
                "or md); stop that device first"
            )


def _device_and_partitions(node: Path, rdev: int) -> Iterator[tuple[str, int, Path]]:
    """The device's sysfs name, number and holders dir, then each partition's (a whole disk's)."""
    yield node.name, rdev, node / "holders"
    for child in _entries(node):
        if (child / "partition").exists():
            number = _device_number(child / "dev")
            if number is not None:
                yield child.name, number, child / "holders"


def _mounted(mountinfo: Path) -> dict[int, str]:
    """Device number -> mount point of every mount (also through a /dev source path, for btrfs)."""
    mounts: dict[int, str] = {}
    try:
        text = mountinfo.read_text()
    except OSError:
        return mounts
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or " - " not in line:
            continue
        major, _, minor = fields[2].partition(":")
        if major.isdigit() and minor.isdigit():
            mounts.setdefault(os.makedev(int(major), int(minor)), fields[4])
        source = line.split(" - ", 1)[1].split()[1:2]
        if source and source[0].startswith("/dev/"):
            try:
                st = os.stat(source[0])
            except OSError:
                continue
            if stat.S_ISBLK(st.st_mode):
                mounts.setdefault(st.st_rdev, fields[4])
    return mounts


def _device_number(dev_file: Path) -> int | None:
    try:
        major, _, minor = dev_file.read_text().strip().partition(":")
        return os.makedev(int(major), int(minor))
    except (OSError, ValueError):
        return None


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []
