"""QEMU and kernel command lines, built without QEMU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nixvmd.vm.cmdline import (
    Accelerator,
    BootSpec,
    Disk,
    MachineSpec,
    Sockets,
    direct_command,
    kernel_cmdline,
    kernel_params,
    machine_options,
)


@pytest.fixture
def machine(tmp_path: Path) -> MachineSpec:
    """A TCG machine with two disks and an extra user option."""
    return MachineSpec(
        accel=Accelerator.TCG,
        memory=512 << 20,
        cpus=2,
        sockets=Sockets(qmp=tmp_path / "qmp.sock", agent=tmp_path / "agent.sock"),
        console_log=tmp_path / "console.log",
        disks=(
            Disk(tmp_path / "test.img", "nixvmd-test"),
            Disk(tmp_path / "scratch.qcow2", "SCRATCH", "qcow2"),
        ),
        extra=("-device", "virtio-rng-pci"),
    )


@pytest.fixture
def boot(tmp_path: Path) -> BootSpec:
    """A direct kernel boot."""
    return BootSpec(tmp_path / "bzImage", tmp_path / "initrd.cpio", "console=ttyS0,115200 panic=-1 quiet")


def values(argv: list[str], option: str) -> list[str]:
    """Every value given to `option` on the command line, in order."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def properties(value: str) -> dict[str, str]:
    """A QEMU option value "[driver,]key=value,..." as a dict (the driver under "")."""
    props = {}
    for item in value.split(","):
        key, equals, val = item.partition("=")
        if equals:
            props[key] = val
        else:
            props[""] = key
    return props


def test_direct_boot_has_kernel_initrd_and_append(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu-system-x86_64", machine, boot)

    assert argv[0] == "qemu-system-x86_64"
    assert values(argv, "-kernel") == [str(boot.kernel)]
    assert values(argv, "-initrd") == [str(boot.initrd)]
    assert values(argv, "-append") == [boot.append]


def test_memory_and_cpus(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)

    assert values(argv, "-m") == ["512M"]
    assert values(argv, "-smp") == ["2"]


def test_the_guest_never_reboots_and_reports_panics(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)

    # Paused rather than ended, so a vmcore can still be taken over QMP.
    assert values(argv, "-action") == ["panic=none,reboot=shutdown,shutdown=pause"]
    assert "-no-reboot" not in argv
    devices = [properties(d)[""] for d in values(argv, "-device")]
    assert "pvpanic-pci" in devices and "vmcoreinfo" in devices


def test_a_sealed_guest_ends_qemu_when_it_reboots(machine: MachineSpec, boot: BootSpec) -> None:
    sealed = replace(machine, sockets=None)
    argv = direct_command("qemu", sealed, boot)

    assert "-no-reboot" in argv and values(argv, "-action") == ["panic=none"]
    assert "vmcoreinfo" in [properties(d)[""] for d in values(argv, "-device")]


def test_the_agent_port_is_named_for_the_agent(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)
    devices = [properties(d) for d in values(argv, "-device")]
    chardevs = {properties(c)["id"]: properties(c) for c in values(argv, "-chardev")}

    (port,) = [d for d in devices if d[""] == "virtserialport"]
    assert port["name"] == "org.nixvmd.agent"
    assert machine.sockets is not None
    assert chardevs[port["chardev"]]["path"] == str(machine.sockets.agent)
    assert any(d[""] == "virtio-serial-pci" and port["bus"].startswith(d["id"]) for d in devices)


def test_qmp_uses_the_given_socket(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)
    chardevs = {properties(c)["id"]: properties(c) for c in values(argv, "-chardev")}

    (monitor,) = [properties(m) for m in values(argv, "-mon")]
    assert monitor["mode"] == "control"
    assert machine.sockets is not None
    assert chardevs[monitor["chardev"]]["path"] == str(machine.sockets.qmp)


def test_the_serial_console_is_stdio_never_a_socket_or_a_logfile(
    machine: MachineSpec, boot: BootSpec
) -> None:
    # A socket refuses bytes when its reader lags and the UART then drops them; QEMU's
    # logfile records each refused byte again: garbled KTAP under host load (docs/console.md).
    argv = direct_command("qemu", machine, boot)
    chardevs = {properties(c)["id"]: properties(c) for c in values(argv, "-chardev")}

    (serial,) = values(argv, "-serial")
    console = chardevs[serial.removeprefix("chardev:")]
    assert console[""] == "stdio"
    assert "logfile" not in console
    assert console["signal"] == "off"
    assert not [c for c in chardevs.values() if "logfile" in c]


def test_one_virtio_blk_per_disk_with_its_serial(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)
    drives = {properties(d)["id"]: properties(d) for d in values(argv, "-drive")}

    blks = [properties(d) for d in values(argv, "-device") if d.startswith("virtio-blk-pci,")]

    assert [b["serial"] for b in blks] == ["nixvmd-test", "SCRATCH"]
    assert [drives[b["drive"]]["file"] for b in blks] == [str(d.path) for d in machine.disks]
    assert [drives[b["drive"]]["format"] for b in blks] == ["raw", "qcow2"]


def test_a_users_disk_keeps_the_guests_flushes_and_a_readonly_one_is_readonly(
    machine: MachineSpec, boot: BootSpec
) -> None:
    mine = (
        Disk(Path("/dev/sdb4"), "part", readonly=True, cache="writeback"),
        Disk(Path("/srv/a,b.img"), "a"),
    )
    argv = direct_command("qemu", replace(machine, disks=mine), boot)
    drives = values(argv, "-drive")
    assert drives[0].startswith("file=/dev/sdb4,format=raw,") and drives[0].endswith(",readonly=on")
    assert "cache=writeback" in drives[0].split(",")
    assert drives[1].startswith("file=/srv/a,,b.img,format=raw,")  # QEMU's escape for a comma
    assert "cache=unsafe" in drives[1].split(",") and "readonly" not in drives[1]


def test_no_disks_no_drives(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", replace(machine, disks=()), boot)

    assert values(argv, "-drive") == []
    assert not [d for d in values(argv, "-device") if d.startswith("virtio-blk-pci")]


def test_kvm_only_when_asked(machine: MachineSpec, boot: BootSpec) -> None:
    tcg = direct_command("qemu", machine, boot)
    kvm = direct_command("qemu", replace(machine, accel=Accelerator.KVM), boot)

    assert [properties(a)[""] for a in values(tcg, "-accel")] == ["tcg"]
    assert "-enable-kvm" not in tcg
    assert not [m for m in values(tcg, "-machine") if "kvm" in m]
    assert values(kvm, "-accel") == ["kvm"]


def test_extra_options_come_last(machine: MachineSpec, boot: BootSpec) -> None:
    argv = direct_command("qemu", machine, boot)

    assert argv[-2:] == ["-device", "virtio-rng-pci"]


def test_machine_options_are_part_of_the_direct_command(machine: MachineSpec, boot: BootSpec) -> None:
    options = machine_options(machine)
    argv = direct_command("qemu", machine, boot)

    start = argv.index(options[0])
    assert argv[start : start + len(options)] == options
    assert "-kernel" not in options


def test_kernel_cmdline_puts_console_and_panic_before_the_users_params() -> None:
    words = kernel_cmdline("panic=10 console=tty0 xfs.debug=1", Accelerator.KVM).split()

    assert words[: words.index("panic=10")] == ["console=ttyS0,115200", "rdinit=/init", "panic=-1"]
    assert words[-3:] == ["panic=10", "console=tty0", "xfs.debug=1"]


def test_kernel_cmdline_without_user_params() -> None:
    words = kernel_cmdline("", Accelerator.TCG).split()

    assert words[0] == "console=ttyS0,115200"
    assert "panic=-1" in words
    assert "" not in kernel_cmdline("", Accelerator.KVM).split(" ")


def test_kernel_cmdline_without_serial_console() -> None:
    words = kernel_cmdline("quiet", Accelerator.KVM, serial_console=False).split()

    assert not [w for w in words if w.startswith("console=")]
    assert words.index("panic=-1") < words.index("quiet")


def test_emulated_guests_skip_the_timer_check_and_kvm_guests_keep_it() -> None:
    assert "no_timer_check" in kernel_cmdline("", Accelerator.TCG).split()
    assert "no_timer_check" not in kernel_cmdline("", Accelerator.KVM).split()


def test_both_backends_get_the_same_kernel_policy() -> None:
    # The nix backend passes kernel_params as QEMU_KERNEL_PARAMS; direct boot adds only its console and init.
    for accel in Accelerator:
        policy = kernel_params("quiet", accel)
        assert kernel_cmdline("quiet", accel).endswith(" " + policy)
    assert kernel_params("quiet", Accelerator.TCG) == "panic=-1 no_timer_check quiet"
    assert kernel_params("", Accelerator.KVM) == "panic=-1"
