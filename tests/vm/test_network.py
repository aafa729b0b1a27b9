"""vm.network = "user": the QEMU options, and the forwarded port read back from `info usernet`."""

from __future__ import annotations

from pathlib import Path

from nixvmd.config.schema import Network
from nixvmd.vm.cmdline import Accelerator, BootSpec, MachineSpec, Sockets, direct_command
from nixvmd.vm.network import forwarded_port, hostfwd_option, user_net_options

# What QEMU 7.2 answered here for `-netdev user,id=n0,hostfwd=tcp:127.0.0.1:0-:22`.
USERNET = (
    "Hub -1 (n0):\r\n"
    "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
    "  TCP[HOST_FORWARD]   3       127.0.0.1 35281       10.0.2.15    22     0     0\r\n"
)


def _spec(tmp_path: Path, network: Network) -> MachineSpec:
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    return MachineSpec(Accelerator.TCG, 512 << 20, 1, sockets, tmp_path / "console.log", network=network)


def test_the_forward_asks_the_kernel_for_a_free_localhost_port() -> None:
    assert hostfwd_option() == "hostfwd=tcp:127.0.0.1:0-:22"
    assert user_net_options() == [
        "-netdev",
        "user,id=nixvmd-net,hostfwd=tcp:127.0.0.1:0-:22",
        "-device",
        "virtio-net-pci,netdev=nixvmd-net",
    ]


def test_the_direct_command_line_has_the_nic_only_with_network_user(tmp_path: Path) -> None:
    boot = BootSpec(tmp_path / "bzImage", tmp_path / "initrd", "console=ttyS0")
    with_net = direct_command("qemu", _spec(tmp_path, Network.USER), boot)
    at = with_net.index("-netdev")
    assert with_net[at : at + 4] == user_net_options()
    without = direct_command("qemu", _spec(tmp_path, Network.NONE), boot)
    assert not any("netdev" in a for a in without)


def test_the_port_qemu_bound_is_read_from_info_usernet() -> None:
    assert forwarded_port(USERNET) == 35281


def test_no_forward_to_the_guest_port_is_none() -> None:
    assert forwarded_port(USERNET, guest_port=2222) is None
    assert forwarded_port("Hub -1 (n0):\r\n  Protocol[State]    FD  Source Address  Port\r\n") is None
    assert forwarded_port(USERNET.replace("35281", "0")) is None  # not bound (yet)
