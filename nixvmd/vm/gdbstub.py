"""QEMU's gdbstub for `nixvmctl run --gdb`: its options, and the gdb command that attaches to it.

The stub listens on a Unix socket in the run's socket directory, not on a TCP port: no
port to find free (and lose to a race), nobody else on the host can reach the guest's
memory, and gdb (Debian 12's is 13.1; Unix sockets since 8.3) attaches with a plain
`target remote /path/to/socket`. Pure functions, testable without QEMU or gdb.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GDB_CHARDEV = "nixvmd-gdb"
SOCKET_NAME = "gdb"
# The kernel parameter a debugged run adds: symbols stay where vmlinux says they are.
NOKASLR = "nokaslr"


class GdbMode(enum.StrEnum):
    """`nixvmctl run --gdb` (WAIT: the guest holds at its first instruction until gdb
    continues it) or `--gdb=nowait` (the guest runs at once; gdb may attach any time)."""

    WAIT = "wait"
    NOWAIT = "nowait"


@dataclass(frozen=True)
class GdbStub:
    """The gdbstub of one VM: where it listens, and whether the guest waits for gdb."""

    socket: Path
    mode: GdbMode

    @property
    def waits(self) -> bool:
        return self.mode is GdbMode.WAIT

    @property
    def target(self) -> str:
        """What gdb's `target remote` takes."""
        return str(self.socket)


def gdbstub_options(stub: GdbStub) -> list[str]:
    """QEMU's options for `stub`: a listening chardev (not waiting for a client: QEMU and the
    guest come up either way), the gdbstub on it, and `-S` when the guest waits for gdb."""
    return [
        "-chardev",
        f"socket,id={GDB_CHARDEV},path={stub.socket},server=on,wait=off",
        "-gdb",
        f"chardev:{GDB_CHARDEV}",
        *(["-S"] if stub.waits else []),
    ]


def vmlinux_of(tree: Path, image: Path) -> Path:
    """The vmlinux the kernel image was built from: in the build directory above the image
    (an `O=` tree's arch/x86/boot/bzImage is under the build dir, not the source tree),
    else at the top of `tree`."""
    for directory in image.parents:
        if (directory / "vmlinux").is_file():
            return directory / "vmlinux"
        if directory == tree:
            break
    return tree / "vmlinux"


def gdb_argv(vmlinux: Path, target: str) -> list[str]:
    """The gdb command that loads `vmlinux` and attaches to the stub at `target`."""
    return ["gdb", str(vmlinux), "-ex", f"target remote {target}"]


def gdb_status(stub: GdbStub, vmlinux: Path) -> dict[str, object]:
    """`current.gdb` in status: the target, the command (a shell line) and its argv."""
    argv = gdb_argv(vmlinux, stub.target)
    return {"target": stub.target, "mode": str(stub.mode), "command": shlex.join(argv), "argv": argv}


def parse_mode(value: str | None, choices: Sequence[str] = tuple(GdbMode)) -> GdbMode | None:
    """A run request's `gdb` argument: None (no gdb), "wait" or "nowait"; ValueError otherwise."""
    if value is None:
        return None
    if value not in choices:
        raise ValueError(f"gdb must be one of {', '.join(choices)}, not {value!r}")
    return GdbMode(value)
