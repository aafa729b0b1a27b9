"""A run's ssh access: what status and run.json say per backend, and the guest's `ssh` frame."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.run.listen import Listener, RunHooks
from nixvmd.run.ssh_access import NO_SSHD, ssh_access
from nixvmd.suite.registry import make_suite


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
    assert access["ready"] is True and access["error"] is None
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
