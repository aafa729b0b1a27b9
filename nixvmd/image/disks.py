"""The guest's scratch disks: sparse files kept between runs, recreated when their size changes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nixvmd.config.schema import DiskConfig
from nixvmd.vm.cmdline import Disk


def prepare_disks(disks: Sequence[DiskConfig], directory: Path) -> tuple[Disk, ...]:
    """Sparse raw images for `disks` in `directory`, each attached with its serial."""
    if not disks:
        return ()
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for disk in disks:
        path = directory / f"{disk.name}.img"
        if not path.exists() or path.stat().st_size != disk.size:
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                os.ftruncate(f.fileno(), disk.size)
            tmp.replace(path)
        out.append(Disk(path, disk.serial))
    return tuple(out)
