"""A run's ssh access (vm.network = "user"): the forwarded port, how to log in, whether sshd is up.

Once QEMU is up, the port it bound for the guest's ssh is read back (nixvmd.vm.network)
and told to the run's owner as `current.ssh` (or the shard's), and kept in run.json's
`ssh`. Who runs an sshd in the guest decides the rest: the direct backend with the host
root shared starts the host's sshd with nixvmd's host key (checked strictly; the agent's
`ssh` frame says when it listens); a NixOS guest runs its own (services.openssh, its own
host key), which is up once its banner comes through the forward (`await_sshd`); the
direct backend without the shared root has none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from nixvmd.config.schema import Backend, Config, Network
from nixvmd.results.record import RunRecord
from nixvmd.run.listen import RunHooks
from nixvmd.vm.machine import Machine
from nixvmd.vm.network import FORWARD_HOST, ssh_port
from nixvmd.vm.ssh import GUEST_USER, ssh_command, ssh_keys

NO_SSHD = "the direct backend's guest has no sshd without image.share_host_root = true"
RECORDED = ("host", "port", "user", "command")
PROBE_S = 3.0  # one probe: how long the banner may take once QEMU took the connection
PROBE_EVERY_S = 1.0  # at most one probe a second while the guest boots


def ssh_access(config: Config, port: int) -> dict[str, Any]:
    """`current.ssh` for a guest whose ssh is forwarded from `port`: host, port, user, command,
    `ready` (False: nobody knows yet that sshd answers) and `error` (why there is no ssh, or None)."""
    direct = config.image.backend == Backend.DIRECT
    pinned = direct and config.image.share_host_root
    keys = ssh_keys(config.daemon.state_dir)
    return {
        "host": FORWARD_HOST,
        "port": port,
        "user": GUEST_USER,
        "command": ssh_command(keys, FORWARD_HOST, port, pinned=pinned),
        "ready": False,
        "error": NO_SSHD if direct and not pinned else None,
    }


async def sshd_answers(host: str, port: int, timeout: float) -> bool:
    """Whether an SSH server on host:port sends its identification line ("SSH-2.0-...") within `timeout`.

    QEMU's forward accepts a connection whether or not the guest listens: it closes it when
    the guest refuses, and holds it while the guest does not answer at all (no NIC yet), so
    only the server's own banner (RFC 4253 §4.2; other lines may come first) says it is up.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while line := await reader.readline():
                    if line.startswith(b"SSH-"):
                        return True
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):  # ValueError: a line past the reader's limit
        return False
    return False


async def await_sshd(port: int, within: float, on_ssh: Callable[[dict[str, Any]], None]) -> None:
    """Probe the forwarded `port` until the guest's sshd answers (news: ready) or `within` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        started = loop.time()
        if await sshd_answers(FORWARD_HOST, port, min(PROBE_S, left)):
            on_ssh({"ready": True, "error": None})
            return
        # A refused probe ends at once; the guest gives no sign when it starts listening.
        await asyncio.sleep(max(0.0, min(started + PROBE_EVERY_S, deadline) - loop.time()))
    on_ssh(
        {
            "ready": False,
            "error": f"the guest's sshd did not answer on {FORWARD_HOST}:{port} within {within:g} s "
            "(vm.boot_timeout); does the NixOS configuration enable services.openssh?",
        }
    )


@contextlib.asynccontextmanager
async def ssh_announced(
    config: Config, machine: Machine, record: RunRecord, hooks: RunHooks
) -> AsyncIterator[None]:
    """With vm.network = "user": the started `machine`'s ssh access into `record` and to the owner;
    for a NixOS guest, `await_sshd` runs during the `async with` block and ends with it."""
    if config.vm.network is not Network.USER:
        yield
        return
    access = ssh_access(config, await ssh_port(machine))
    record.ssh = {key: access[key] for key in RECORDED}
    hooks.on_ssh(access)
    if config.image.backend is not Backend.NIX:  # the direct backend's agent sends an `ssh` frame
        yield
        return
    probe = asyncio.create_task(await_sshd(access["port"], config.vm.boot_timeout, hooks.on_ssh))
    try:
        yield
    finally:
        probe.cancel()
        await asyncio.wait([probe])  # not `await probe`: our own cancellation must still reach us
