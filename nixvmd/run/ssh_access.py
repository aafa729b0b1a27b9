"""A run's ssh access (vm.network = "user"): the forwarded port, how to log in, whether sshd is up.

Once QEMU is up, the port it bound for the guest's ssh is read back (nixvmd.vm.network)
and told to the run's owner as `current.ssh` (or the shard's), and kept in run.json's
`ssh`. Who runs an sshd in the guest decides the rest: the direct backend with the host
root shared starts the host's sshd with nixvmd's host key (checked strictly; the agent's
`ssh` frame says when it listens); a NixOS guest runs its own (services.openssh, its own
host key) from boot; the direct backend without the shared root has none.
"""

from __future__ import annotations

from typing import Any

from nixvmd.config.schema import Backend, Config, Network
from nixvmd.results.record import RunRecord
from nixvmd.run.listen import RunHooks
from nixvmd.vm.machine import Machine
from nixvmd.vm.network import FORWARD_HOST, ssh_port
from nixvmd.vm.ssh import GUEST_USER, ssh_command, ssh_keys

NO_SSHD = "the direct backend's guest has no sshd without image.share_host_root = true"
RECORDED = ("host", "port", "user", "command")


def ssh_access(config: Config, port: int) -> dict[str, Any]:
    """`current.ssh` for a guest whose ssh is forwarded from `port`: host, port, user, command,
    `ready` (sshd known to listen) and `error` (why there is no ssh, or None)."""
    direct = config.image.backend == Backend.DIRECT
    pinned = direct and config.image.share_host_root
    keys = ssh_keys(config.daemon.state_dir)
    return {
        "host": FORWARD_HOST,
        "port": port,
        "user": GUEST_USER,
        "command": ssh_command(keys, FORWARD_HOST, port, pinned=pinned),
        # A NixOS guest's sshd comes up with its system; the agent of ours says when it does.
        "ready": not direct,
        "error": NO_SSHD if direct and not pinned else None,
    }


async def announce_ssh(config: Config, machine: Machine, record: RunRecord, hooks: RunHooks) -> None:
    """With vm.network = "user": the started `machine`'s ssh access into `record` and to the owner."""
    if config.vm.network is not Network.USER:
        return
    access = ssh_access(config, await ssh_port(machine))
    record.ssh = {key: access[key] for key in RECORDED}
    hooks.on_ssh(access)
