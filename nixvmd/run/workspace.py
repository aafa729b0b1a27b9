"""Everything one run owns while it goes, on one ExitStack: sockets, disks, initrd, runner work dir.

What the record needs (console.log, qemu.log, results, run.json) lives in the run
directory and stays; the rest is scratch under `<run_dir>/scratch/` and goes when the
run ends, however it ends. The VM's sockets live in a short private directory under
$XDG_RUNTIME_DIR or /tmp (sun_path has 108 bytes). Read-only caches (the base
initramfs, kernel snapshots, the nix image) are shared by every run and not here; so two
runs on one state_dir share nothing they write.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import DiskConfig
from nixvmd.image.disks import prepare_disks
from nixvmd.results.space import make_dirs
from nixvmd.results.store import disks_dir, scratch_dir
from nixvmd.vm.cmdline import Disk, Sockets
from nixvmd.vm.gdbstub import SOCKET_NAME
from nixvmd.vm.machine import release_socket_dir, socket_dir


@dataclass(frozen=True)
class Workspace:
    """The paths one run owns; valid inside `open_workspace`'s block."""

    run_dir: Path
    sockets: Sockets
    disks: tuple[Disk, ...]

    @property
    def scratch(self) -> Path:
        """Removed when the run ends."""
        return scratch_dir(self.run_dir)

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def initrd(self) -> Path:
        """The direct backend's initrd of this run (the cached base plus the run's job)."""
        return self.scratch / "initrd.cpio"

    @property
    def gdb_socket(self) -> Path:
        """Where a `--gdb` run's gdbstub listens (beside QMP: short, private to the user)."""
        return self.sockets.qmp.parent / SOCKET_NAME

    @property
    def runner_dir(self) -> Path:
        """The nix runner's TMPDIR (its emptyDiskImages) and the home of its NIX_DISK_IMAGE."""
        return self.scratch / "runner"


@contextlib.contextmanager
def open_workspace(run_dir: Path, disks: Sequence[DiskConfig]) -> Iterator[Workspace]:
    """The workspace of the run in `run_dir`: made on entry, its scratch and sockets gone on exit.

    StateSpaceError when the state dir has no room for the scratch dir or a disk image;
    whatever was made before that is removed again.
    """
    with contextlib.ExitStack() as stack:
        scratch = scratch_dir(run_dir)
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        make_dirs(scratch, "creating the run's scratch directory")
        sockets = socket_dir()
        stack.callback(release_socket_dir, sockets)
        images = prepare_disks(disks, disks_dir(run_dir))
        yield Workspace(run_dir, Sockets(sockets / "qmp", sockets / "agent"), images)
