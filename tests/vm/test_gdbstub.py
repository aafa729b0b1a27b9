"""`nixvmctl run --gdb`'s command lines: QEMU's gdbstub, nokaslr, -S and the gdb command, both backends."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from nixvmd.image.nix import NixImage
from nixvmd.image.nix_launch import prepare_nix, runner_qemu_options
from nixvmd.vm.cmdline import (
    Accelerator,
    BootSpec,
    MachineSpec,
    Sockets,
    direct_command,
    kernel_cmdline,
    kernel_params,
)
from nixvmd.vm.gdbstub import GdbMode, GdbStub, gdb_argv, gdb_status, parse_mode, vmlinux_of


def _spec(tmp_path: Path, gdb: GdbStub | None) -> MachineSpec:
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    return MachineSpec(Accelerator.TCG, 256 << 20, 1, sockets, tmp_path / "console.log", gdb=gdb)


def _after(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def test_a_waiting_stub_listens_on_its_socket_and_holds_the_guest(tmp_path: Path) -> None:
    stub = GdbStub(tmp_path / "gdb", GdbMode.WAIT)
    boot = BootSpec(tmp_path / "bzImage", tmp_path / "initrd", "console=ttyS0")
    argv = direct_command("qemu-system-x86_64", _spec(tmp_path, stub), boot)

    chardev = next(c for c in _after(argv, "-chardev") if c.startswith("socket,id=nixvmd-gdb,"))
    assert f"path={tmp_path / 'gdb'}" in chardev.split(",")
    assert {"server=on", "wait=off"} <= set(chardev.split(","))  # QEMU does not wait for gdb to connect
    assert _after(argv, "-gdb") == ["chardev:nixvmd-gdb"]
    assert "-S" in argv


def test_nowait_keeps_the_stub_and_lets_the_guest_run(tmp_path: Path) -> None:
    stub = GdbStub(tmp_path / "gdb", GdbMode.NOWAIT)
    boot = BootSpec(tmp_path / "bzImage", tmp_path / "initrd", "")
    argv = direct_command("qemu", _spec(tmp_path, stub), boot)
    assert _after(argv, "-gdb") == ["chardev:nixvmd-gdb"]
    assert "-S" not in argv


def test_an_ordinary_run_has_no_stub_and_no_nokaslr(tmp_path: Path) -> None:
    argv = direct_command("qemu", _spec(tmp_path, None), BootSpec(tmp_path / "k", tmp_path / "i", ""))
    assert "-gdb" not in argv and "-S" not in argv
    assert "nokaslr" not in kernel_params("", Accelerator.TCG)
    assert "nokaslr" not in kernel_cmdline("", Accelerator.TCG)


def test_nokaslr_comes_before_the_users_parameters() -> None:
    assert kernel_params("quiet", Accelerator.TCG, gdb=True) == "panic=-1 no_timer_check nokaslr quiet"
    assert kernel_cmdline("", Accelerator.KVM, gdb=True).split()[-1] == "nokaslr"


def test_the_nix_backend_gets_the_stub_in_qemu_opts_and_nokaslr_in_kernel_params(tmp_path: Path) -> None:
    stub = GdbStub(tmp_path / "gdb", GdbMode.WAIT)
    opts = runner_qemu_options(_spec(tmp_path, stub))
    assert _after(opts, "-gdb") == ["chardev:nixvmd-gdb"] and "-S" in opts

    image = NixImage(Path("/nix/store/x-vm"), Path("/nix/store/x-vm/bin/run-node-vm"), "node")
    run_dir = tmp_path / "run"
    spec = _spec(tmp_path, stub)
    launch = prepare_nix(image, tmp_path / "bzImage", "quiet", spec, run_dir, run_dir / "w", {})
    env = dict(launch.env or ())
    assert env["QEMU_KERNEL_PARAMS"] == "panic=-1 no_timer_check nokaslr quiet"
    assert "-gdb chardev:nixvmd-gdb" in env["QEMU_OPTS"] and " -S" in env["QEMU_OPTS"]


def test_the_gdb_command_loads_vmlinux_and_targets_the_socket(tmp_path: Path) -> None:
    stub = GdbStub(tmp_path / "sock dir" / "gdb", GdbMode.WAIT)
    vmlinux = tmp_path / "linux" / "vmlinux"
    shown = gdb_status(stub, vmlinux)
    assert shown["argv"] == gdb_argv(vmlinux, stub.target)
    assert shown["argv"] == ["gdb", str(vmlinux), "-ex", f"target remote {tmp_path / 'sock dir' / 'gdb'}"]
    assert shlex.split(str(shown["command"])) == shown["argv"]  # the shell line is the same command
    assert shown["target"] == str(stub.socket) and shown["mode"] == "wait"


def test_vmlinux_is_found_beside_the_image_build_in_tree_and_with_o(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    image = tree / "arch/x86/boot/bzImage"
    image.parent.mkdir(parents=True)
    (tree / "vmlinux").write_bytes(b"\x7fELF")
    assert vmlinux_of(tree, image) == tree / "vmlinux"

    build = tmp_path / "build"  # make O=../build: the image and vmlinux are there, not in the tree
    o_image = build / "arch/x86/boot/bzImage"
    o_image.parent.mkdir(parents=True)
    (build / "vmlinux").write_bytes(b"\x7fELF")
    assert vmlinux_of(tree, o_image) == build / "vmlinux"


def test_without_a_built_vmlinux_the_command_names_the_trees(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    image = tree / "arch/x86/boot/bzImage"
    image.parent.mkdir(parents=True)
    (tmp_path / "vmlinux").write_bytes(b"")  # above the tree: not this kernel's
    assert vmlinux_of(tree, image) == tree / "vmlinux"


def test_the_mode_is_wait_or_nowait() -> None:
    assert parse_mode(None) is None
    assert parse_mode("wait") is GdbMode.WAIT
    assert parse_mode("nowait") is GdbMode.NOWAIT
    with pytest.raises(ValueError, match="gdb must be one of wait, nowait, not 'later'"):
        parse_mode("later")
    assert replace(GdbStub(Path("/s"), GdbMode.WAIT), mode=GdbMode.NOWAIT).waits is False
