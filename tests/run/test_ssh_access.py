"""A run's ssh access: what status and run.json say per backend, and the guest's `ssh` frame."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.run.listen import Listener, RunHooks
from nixvmd.run.ssh_access import NO_SSHD, await_sshd, ssh_access, sshd_answers
from nixvmd.suite.registry import make_suite
from tests.nix_builder import SSHD


def _config(tmp_path: Path, image: str) -> Config:
    text = f'[kernel]\ntree = "{tmp_path}"\n[image]\n{image}\n[vm]\nnetwork = "user"\n'
    text += f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    return parse_config(text, name="nixvmd.toml", base=tmp_path)


def test_the_shared_host_roots_sshd_is_pinned_and_waited_for(tmp_path: Path) -> None:
    access = ssh_access(_config(tmp_path, "share_host_root = true"), 40022)
    assert access["host"] == "127.0.0.1" and access["port"] == 40022 and access["user"] == "root"
    assert access["ready"] is False and access["error"] is None  # until the agent's `ssh up`
    argv = shlex.split(access["command"])
    assert "StrictHostKeyChecking=yes" in argv and argv[argv.index("-p") + 1] == "40022"
    assert (tmp_path / "state" / "ssh" / "id_ed25519").is_file()


def test_the_direct_backend_without_the_shared_root_has_no_sshd(tmp_path: Path) -> None:
    access = ssh_access(_config(tmp_path, "share_host_root = false"), 40022)
    assert access["error"] == NO_SSHD


def test_a_nixos_guest_runs_its_own_sshd_with_its_own_host_key(tmp_path: Path) -> None:
    access = ssh_access(_config(tmp_path, 'backend = "nix"'), 40022)
    assert access["ready"] is False and access["error"] is None  # until its banner comes through
    assert "StrictHostKeyChecking=no" in shlex.split(access["command"])


def test_the_ssh_frame_is_news_for_the_owner_not_an_ending(tmp_path: Path) -> None:
    config = _config(tmp_path, "share_host_root = true")
    heard: list[dict[str, Any]] = []
    suite = make_suite(config)
    listener = Listener(suite, RunHooks(on_ssh=heard.append), tmp_path)
    nonce = suite.job().nonce
    listener.agent(f"@@NIXVMD@@ {nonce} 1 ssh up @@")
    listener.agent(f"@@NIXVMD@@ {nonce} 2 ssh sshd did not listen on port 22 within 20 s @@")
    assert heard == [
        {"ready": True, "error": None},
        {"ready": False, "error": "sshd did not listen on port 22 within 20 s"},
    ]
    assert not any(event.is_set() for event in listener.events.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _forward_while_the_guest_refuses(port: int, accepted: list[int]) -> AsyncIterator[asyncio.Event]:
    """What QEMU's forward does before the guest listens: take each connection, then close it."""
    twice = asyncio.Event()

    def take(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        if len(accepted) >= 2:
            twice.set()
        writer.close()

    server = await asyncio.start_server(take, "127.0.0.1", port, reuse_address=True)
    async with server:
        yield twice


def _sshd_config(directory: Path, port: int) -> Path:
    """A config for Debian's sshd on 127.0.0.1:`port`, with a host key of its own."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "hk")], check=True)
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'hk'}\nPidFile none\nUsePAM no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    return config


@contextlib.asynccontextmanager
async def _sshd(config: Path) -> AsyncIterator[None]:
    """sshd with `config`, up (it said it listens) for the block, ended after it."""
    sshd = await asyncio.create_subprocess_exec(
        str(SSHD), "-D", "-e", "-f", str(config), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert sshd.stderr is not None
        async with asyncio.timeout(20):
            while b"Server listening on 127.0.0.1" not in (line := await sshd.stderr.readline()):
                assert line, "sshd ended before it listened"
        yield
    finally:
        sshd.terminate()
        await sshd.wait()


@pytest.mark.skipif(not SSHD.is_file(), reason="no sshd (openssh-server)")
def test_a_nixos_guests_sshd_is_ready_once_its_banner_comes_through_the_forward(tmp_path: Path) -> None:
    port = _free_port()
    accepted: list[int] = []
    heard: list[dict[str, Any]] = []
    news = asyncio.Event()

    def on_ssh(item: dict[str, Any]) -> None:
        heard.append(item)
        news.set()

    config = _sshd_config(tmp_path, port)

    async def scenario() -> None:
        probe = asyncio.create_task(await_sshd(port, 60.0, on_ssh))
        try:
            async with _forward_while_the_guest_refuses(port, accepted) as twice:
                await asyncio.wait_for(twice.wait(), 20)
            assert heard == []  # connections taken and closed, no banner: still booting
            async with _sshd(config):
                await asyncio.wait_for(news.wait(), 20)
                assert heard == [{"ready": True, "error": None}]
                await asyncio.wait_for(probe, 5)  # it stops probing once told
        finally:
            probe.cancel()

    asyncio.run(scenario())
    assert len(accepted) >= 2


def test_a_forward_that_holds_the_connection_silent_is_not_an_sshd() -> None:
    # A guest with no NIC up yet never answers QEMU's SYN: the host side stays open and silent.
    async def scenario() -> tuple[bool, bool]:
        held: list[asyncio.StreamWriter] = []

        def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            silent = await sshd_answers("127.0.0.1", port, 0.5)
        nobody = await sshd_answers("127.0.0.1", port, 0.5)  # QEMU gone: connection refused
        for writer in held:
            writer.close()
        return silent, nobody

    assert asyncio.run(scenario()) == (False, False)


def test_a_guest_whose_sshd_never_answers_is_told_in_one_sentence() -> None:
    port = _free_port()
    heard: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with _forward_while_the_guest_refuses(port, []):
            await asyncio.wait_for(await_sshd(port, 1.5, heard.append), 10)

    asyncio.run(scenario())
    assert heard == [
        {
            "ready": False,
            "error": f"the guest's sshd did not answer on 127.0.0.1:{port} within 1.5 s (vm.boot_timeout); "
            "does the NixOS configuration enable services.openssh?",
        }
    ]
