"""The guest's user-mode network: QEMU options, and the host port its ssh is forwarded from.

The forward asks for host port 0, so the host's kernel picks a free port when QEMU binds
it: two VMs (runs, shards) can never be given the same port, and there is no window
between choosing a port and binding it. Which port it became is read back over QMP
(`info usernet`), once QEMU is up.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nixvmd.errors import VMError

if TYPE_CHECKING:
    from nixvmd.vm.machine import Machine

NETDEV_ID = "nixvmd-net"
FORWARD_HOST = "127.0.0.1"
GUEST_SSH_PORT = 22
# User-mode networking with no way out: no packet to the host or beyond, only forwards.
RESTRICTED = "restrict=on"

# `info usernet`: "TCP[HOST_FORWARD]  3  127.0.0.1 35281  10.0.2.15  22  0  0" (QEMU 7.2)
_FORWARD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+(?P<host>\S+)\s+(?P<port>\d+)\s+\S+\s+(?P<guest>\d+)\b")


def hostfwd_option(guest_port: int = GUEST_SSH_PORT) -> str:
    """The user netdev's forward of a kernel-chosen localhost port to the guest's `guest_port`."""
    return f"hostfwd=tcp:{FORWARD_HOST}:0-:{guest_port}"


def user_net_options() -> list[str]:
    """A virtio NIC on QEMU's user-mode network (10.0.2.15/24, gateway 10.0.2.2) with the ssh forward."""
    return [
        "-netdev",
        f"user,id={NETDEV_ID},{hostfwd_option()}",
        "-device",
        f"virtio-net-pci,netdev={NETDEV_ID}",
    ]


def forwarded_port(usernet: str, guest_port: int = GUEST_SSH_PORT) -> int | None:
    """The host port forwarded to `guest_port`, from `info usernet`'s text; None when there is none."""
    for match in _FORWARD.finditer(usernet):
        if int(match["guest"]) == guest_port and int(match["port"]) != 0:
            return int(match["port"])
    return None


async def ssh_port(machine: Machine) -> int:
    """The host port QEMU bound for the guest's ssh (needs a RUNNING machine); VMError when none."""
    reply = await machine.execute("human-monitor-command", {"command-line": "info usernet"})
    port = forwarded_port(str(reply))
    if port is None:
        raise VMError(f"QEMU forwards no host port to the guest's port {GUEST_SSH_PORT}: {reply!r}")
    return port
