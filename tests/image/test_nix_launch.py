"""The nix backend's launch: the runner, its §3 environment, and what nixvmd puts in QEMU_OPTS."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nixvmd.config.schema import Network
from nixvmd.errors import VMError
from nixvmd.image.nix import NixImage
from nixvmd.image.nix_launch import prepare_nix, runner_qemu_options
from nixvmd.vm.cmdline import Accelerator, MachineSpec, Sockets


def _spec(tmp_path: Path, accel: Accelerator = Accelerator.TCG, extra: tuple[str, ...] = ()) -> MachineSpec:
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    return MachineSpec(accel, 512 << 20, 2, sockets, tmp_path / "console.log", (), extra)


def test_qemu_opts_override_accel_memory_and_cpus_after_the_runners_own(tmp_path: Path) -> None:
    opts = runner_qemu_options(_spec(tmp_path, extra=("-s",)))
    assert opts[:2] == ["-machine", "accel=tcg"]
    assert "-accel" not in opts  # QEMU refuses it next to the runner's -machine accel=kvm:tcg
    assert opts[opts.index("-m") + 1] == "512M"
    assert opts[opts.index("-smp") + 1] == "2"
    assert any("nixvmd-agent" in o for o in opts)
    assert opts[-1] == "-s"
    kvm = runner_qemu_options(_spec(tmp_path, accel=Accelerator.KVM))
    assert kvm[:4] == ["-machine", "accel=kvm", "-cpu", "host"]


def test_prepare_nix_runs_the_runner_with_the_kernel_in_its_variable(tmp_path: Path) -> None:
    image = NixImage(
        Path("/nix/store/x-nixos-vm"), Path("/nix/store/x-nixos-vm/bin/run-test-node-vm"), "test-node"
    )
    kernel = tmp_path / "bzImage"
    run_dir = tmp_path / "run"
    workdir = run_dir / "scratch" / "runner"
    launch = prepare_nix(image, kernel, "", _spec(tmp_path), run_dir, workdir, {"PATH": "/bin"})
    env = dict(launch.env or ())
    assert launch.argv == (str(image.runner),)
    assert env["NIXPKGS_QEMU_KERNEL_test_node"] == str(kernel)
    assert env["PATH"] == "/bin"
    assert env["USE_TMPDIR"] == "1"
    assert env["QEMU_KERNEL_PARAMS"] == "panic=-1 no_timer_check"
    assert launch.cwd == Path(env["TMPDIR"]) == workdir
    assert launch.cwd.is_dir()
    assert env["SHARED_DIR"] == str(run_dir / "shared")
    assert env["NIX_DISK_IMAGE"] == str(workdir / "test-node.qcow2")


def test_an_option_with_whitespace_is_refused(tmp_path: Path) -> None:
    image = NixImage(Path("/nix/store/x"), Path("/nix/store/x/bin/run-a-vm"), "a")
    with pytest.raises(VMError, match="QEMU_OPTS"):
        prepare_nix(image, tmp_path / "k", "", _spec(tmp_path, extra=("a b",)), tmp_path / "r", tmp_path, {})


def test_network_user_forwards_ssh_through_the_runners_own_netdev(tmp_path: Path) -> None:
    image = NixImage(Path("/nix/store/x"), Path("/nix/store/x/bin/run-a-vm"), "a")
    spec = dataclasses.replace(_spec(tmp_path), network=Network.USER)
    base = {"QEMU_NET_OPTS": "guestfwd=tcp:10.0.2.100:80-cmd:true"}
    env = dict(prepare_nix(image, tmp_path / "k", "", spec, tmp_path / "r", tmp_path, base).env or ())
    assert env["QEMU_NET_OPTS"] == "guestfwd=tcp:10.0.2.100:80-cmd:true,hostfwd=tcp:127.0.0.1:0-:22"
    assert "-netdev" not in env["QEMU_OPTS"]  # no second NIC: the runner has one


def test_network_none_isolates_the_nic_the_runner_always_has(tmp_path: Path) -> None:
    # The runner's `-netdev user,id=user.0,"$QEMU_NET_OPTS"` is there whatever nixvmd sets:
    # "none" must make that netdev restricted, or the guest reaches the host and the internet.
    image = NixImage(Path("/nix/store/x"), Path("/nix/store/x/bin/run-a-vm"), "a")
    spec = _spec(tmp_path)
    assert spec.network is Network.NONE
    plain = dict(prepare_nix(image, tmp_path / "k", "", spec, tmp_path / "r", tmp_path, {}).env or ())
    assert plain["QEMU_NET_OPTS"] == "restrict=on"
    assert "-netdev" not in plain["QEMU_OPTS"] and "hostfwd" not in plain["QEMU_NET_OPTS"]
    base = {"QEMU_NET_OPTS": "hostfwd=tcp::2222-:22"}  # the user's own forward still works
    env = dict(prepare_nix(image, tmp_path / "k", "", spec, tmp_path / "r", tmp_path, base).env or ())
    assert env["QEMU_NET_OPTS"] == "hostfwd=tcp::2222-:22,restrict=on"
