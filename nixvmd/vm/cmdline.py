"""QEMU command lines as pure functions: what nixvmd asks of QEMU, testable without QEMU."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import Network
from nixvmd.config.units import qemu_memory
from nixvmd.guest.protocol import AGENT_PORT
from nixvmd.vm.gdbstub import NOKASLR, GdbStub, gdbstub_options
from nixvmd.vm.network import user_net_options


class Accelerator(enum.StrEnum):
    """The accelerator a VM runs under, once config's "auto" has been settled (nixvmd.vm.accel)."""

    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True)
class Disk:
    """A disk image attached as virtio-blk with a stable serial.

    nixvmd's own scratch images take `cache=unsafe` (they go with the run); a user's disk
    (vm.disks `path`) keeps the guest's flushes (`writeback`).
    """

    path: Path
    serial: str
    format: str | None = "raw"  # None: QEMU probes it (nixvmd.image.host_disks.disk_format)
    readonly: bool = False
    cache: str = "unsafe"


@dataclass(frozen=True)
class Sockets:
    """The host-side Unix sockets QEMU connects to (nixvmd listens on both)."""

    qmp: Path
    agent: Path


@dataclass(frozen=True)
class MachineSpec:
    """Everything about one VM that nixvmd decides (the nix backend's runner decides the rest).

    `console_log` is where the serial console goes: QEMU's stdout, opened by `Machine`.
    """

    accel: Accelerator
    memory: int
    cpus: int
    sockets: Sockets | None  # None: sealed, no QMP and no agent port (a Nix builder's VM)
    console_log: Path
    disks: tuple[Disk, ...] = ()
    extra: tuple[str, ...] = ()
    network: Network = Network.NONE  # USER: user-mode network, ssh forwarded (nixvmd.vm.network)
    gdb: GdbStub | None = None  # nixvmctl run --gdb


@dataclass(frozen=True)
class BootSpec:
    """Direct kernel boot: kernel, initrd and command line."""

    kernel: Path
    initrd: Path
    append: str


def kernel_params(user: str, accel: Accelerator, *, gdb: bool = False) -> str:
    """nixvmd's kernel command line policy for every backend: its parameters, then the user's.

    `panic=-1`: a panicking guest reboots at once, and QEMU (-no-reboot) exits, so a
    crash ends the run instead of hanging it. Under TCG a loaded host can make the
    kernel's timer check fail ("IO-APIC + timer doesn't work!" panics), which says nothing
    about the kernel under test: `no_timer_check`. The user's parameters come last, so
    they win where the kernel takes the last value. A run under gdb gets `nokaslr`, so the
    kernel's symbols are where vmlinux says.
    """
    parts = ["panic=-1", "no_timer_check" if accel is Accelerator.TCG else "", NOKASLR if gdb else "", user]
    return " ".join(p for p in parts if p)


def kernel_cmdline(user: str, accel: Accelerator, *, serial_console: bool = True, gdb: bool = False) -> str:
    """The direct backend's kernel command line: serial console and nixvmd's /init, then `kernel_params`.

    (The nix backend's console and init are the NixOS runner's business.)
    """
    boot = ["console=ttyS0,115200" if serial_console else "", "rdinit=/init"]
    return " ".join(p for p in (*boot, kernel_params(user, accel, gdb=gdb)) if p)


def _accel_args(accel: Accelerator) -> list[str]:
    if accel is Accelerator.KVM:
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def machine_options(spec: MachineSpec) -> list[str]:
    """The options nixvmd adds to any QEMU: control, console, agent, panic and vmcoreinfo devices, disks.

    The serial console is the `stdio` chardev: QEMU's stdout is console.log and its stdin a
    pipe from nixvmd (`Machine`), so console output is written to a regular file, which
    never refuses a byte (nixvmd.vm.console says what a socket did to it). The direct
    backend builds its whole command line around these; the nix backend passes them to
    the NixOS runner through QEMU_OPTS (a `--gdb` run's gdbstub too). A sealed spec
    (`sockets` None: a VM nobody talks to, as in a Nix builder) has no QMP monitor and no
    agent port: the agent then reports on the serial console, and QEMU ends when the guest
    reboots or powers off (-no-reboot).
    With QMP, QEMU pauses the guest instead, so its memory is still there for a vmcore.
    """
    s = spec.sockets
    args: list[str] = []
    if s is not None:
        args += ["-chardev", f"socket,id=nixvmd-qmp,path={s.qmp}", "-mon", "chardev=nixvmd-qmp,mode=control"]
    args += ["-chardev", "stdio,id=nixvmd-con,signal=off", "-serial", "chardev:nixvmd-con"]
    if s is not None:
        args += [
            "-device",
            "virtio-serial-pci,id=nixvmd-vser",
            "-chardev",
            f"socket,id=nixvmd-agent,path={s.agent}",
            "-device",
            f"virtserialport,bus=nixvmd-vser.0,chardev=nixvmd-agent,name={AGENT_PORT}",
        ]
    # vmcoreinfo: the guest (its qemu_fw_cfg driver) tells QEMU where its VMCOREINFO is, so a
    # dump (dump-guest-memory) carries the note crash and drgn need.
    args += ["-device", "pvpanic-pci", "-device", "vmcoreinfo"]
    if s is not None:
        # A guest that reboots (panic=-1 after a panic) or powers off is paused, not ended:
        # nixvmd sees QMP's SHUTDOWN, takes a dump if the run wants one, then quits QEMU.
        args += ["-action", "panic=none,reboot=shutdown,shutdown=pause"]
    else:
        args += ["-action", "panic=none", "-no-reboot"]
    if spec.gdb is not None:
        args += gdbstub_options(spec.gdb)
    for index, disk in enumerate(spec.disks):
        drive = drive_id(index)
        fmt = f",format={disk.format}" if disk.format else ""
        args += [
            "-drive",
            f"file={_option_value(disk.path)}{fmt},if=none,id={drive},"
            f"cache={disk.cache},discard=unmap" + (",readonly=on" if disk.readonly else ""),
            "-device",
            f"virtio-blk-pci,drive={drive},serial={disk.serial}",
        ]
    return args


def _option_value(path: Path) -> str:
    # QEMU's option syntax ends a value at a comma; ",," is a literal one (a user's disk path may hold it).
    return str(path).replace(",", ",,")


def drive_id(index: int) -> str:
    """The QEMU id of the drive of disk number `index` (QMP events such as BLOCK_IO_ERROR name it)."""
    return f"nixvmd-disk{index}"


def shared_memory_options(memory: int) -> list[str]:
    """Guest RAM as a shared memfd: what any vhost-user-fs device (virtiofsd) needs, once per VM."""
    return [
        "-object",
        f"memory-backend-memfd,id=mem,size={qemu_memory(memory)},share=on",
        "-numa",
        "node,memdev=mem",
    ]


def virtiofs_device_options(socket: Path, tag: str, chardev: str) -> list[str]:
    """A vhost-user-fs device for the virtiofsd at `socket`, mounted in the guest by `tag`."""
    device = f"vhost-user-fs-pci,chardev={chardev},tag={tag}"
    return ["-chardev", f"socket,id={chardev},path={socket}", "-device", device]


def host_root_options(socket: Path, memory: int, tag: str = "hostroot") -> list[str]:
    """A vhost-user-fs device for virtiofsd at `socket` (guest RAM must be shared memfd for it)."""
    return [*shared_memory_options(memory), *virtiofs_device_options(socket, tag, "vfs")]


def virtfs_options(path: Path, tag: str) -> list[str]:
    """A read-only 9p share of host `path` (QEMU's own server; no helper process, no root)."""
    escaped = str(path).replace(",", ",,")  # QEMU's option syntax doubles a comma in a value
    return ["-virtfs", f"local,path={escaped},mount_tag={tag},security_model=none,readonly=on"]


def direct_command(qemu: str, spec: MachineSpec, boot: BootSpec) -> list[str]:
    """The full QEMU command line of the direct backend."""
    return [
        qemu,
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "pc",
        *_accel_args(spec.accel),
        "-m",
        qemu_memory(spec.memory),
        "-smp",
        str(spec.cpus),
        "-kernel",
        str(boot.kernel),
        "-initrd",
        str(boot.initrd),
        "-append",
        boot.append,
        *machine_options(spec),
        *(user_net_options() if spec.network is Network.USER else ()),
        *spec.extra,
    ]


@dataclass(frozen=True)
class Launch:
    """How to start one VM: the program, its environment and working directory."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] | None = None
    cwd: Path | None = None
