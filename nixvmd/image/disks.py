"""The guest's disks: sparse raw images, made fresh in each run's workspace (nixvmd.run.workspace).

A fresh scratch disk per run is what fstests users expect: a run never sees what the
previous one left behind. Sparse files cost a create and an ftruncate each. A disk with a
`path` is the user's: checked (nixvmd.image.host_disks) and attached where it is, never made here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nixvmd.config.schema import DiskConfig
from nixvmd.image.host_disks import check_host_disk
from nixvmd.results.space import make_dirs, room_for
from nixvmd.vm.cmdline import Disk


def prepare_disks(disks: Sequence[DiskConfig], directory: Path) -> tuple[Disk, ...]:
    """Sparse raw images for `disks` in `directory`, each attached with its serial.

    A user's disk (`path`) is checked and attached as it is: HostDeviceError when it cannot
    be. A file system with no room (or inodes) for an image raises StateSpaceError and leaves
    no temp file; how much room the images may grow into is the run's space check's business.
    """
    if not disks:
        return ()
    users = {disk.name: check_host_disk(disk) for disk in disks if disk.path is not None}
    make_dirs(directory, "creating the disk image directory")
    out = []
    for disk in disks:
        if (user := users.get(disk.name)) is not None:
            out.append(Disk(user.path, disk.serial, user.format, user.readonly, cache="writeback"))
            continue
        path = directory / disk.file_name
        if not path.exists() or path.stat().st_size != disk.size:
            tmp = path.with_suffix(".tmp")
            with room_for(path, "creating the disk image", partial=tmp):
                with tmp.open("wb") as f:
                    os.ftruncate(f.fileno(), disk.size)
                tmp.replace(path)
        out.append(Disk(path, disk.serial, readonly=disk.readonly))
    return tuple(out)
