"""nixvmd's ssh keys, the guest sshd's config (read by the real sshd) and the client's command line."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from nixvmd.vm.ssh import HOST_ALIAS, SSHD, guest_sshd_env, ssh_argv, ssh_command, ssh_keys, sshd_config


def test_keys_are_made_once_and_known_hosts_pins_the_host_key(tmp_path: Path) -> None:
    keys = ssh_keys(tmp_path)
    first = (keys.client_key.read_bytes(), keys.host_key.read_bytes())
    again = ssh_keys(tmp_path)
    assert (again.client_key.read_bytes(), again.host_key.read_bytes()) == first
    assert keys.client_key.stat().st_mode & 0o077 == 0
    kind, blob = keys.host_public.read_text().split()[:2]
    assert keys.known_hosts.read_text() == f"{HOST_ALIAS} {kind} {blob}\n"
    assert kind == "ssh-ed25519"


def test_a_lost_public_key_makes_the_pair_again(tmp_path: Path) -> None:
    keys = ssh_keys(tmp_path)
    old = keys.host_key.read_bytes()
    keys.host_public.unlink()
    ssh_keys(tmp_path)
    assert keys.host_key.read_bytes() != old
    assert keys.host_public.read_text().split()[1] in keys.known_hosts.read_text()


@pytest.mark.skipif(not Path(SSHD).is_file(), reason="no sshd (openssh-server)")
def test_sshd_reads_the_config_as_key_only_root_login(tmp_path: Path) -> None:
    keys = ssh_keys(tmp_path)
    config = tmp_path / "sshd_config"
    config.write_text(sshd_config())
    # -T: the effective settings, as sshd parsed them (the guest's host key path is absent here).
    done = subprocess.run(
        [SSHD, "-T", "-f", str(config), "-h", str(keys.host_key)], capture_output=True, text=True, check=True
    )
    settings = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] == "without-password"
    assert settings["pubkeyauthentication"] == "yes"
    assert settings["usepam"] == "no"
    assert settings["allowusers"] == "root"
    assert settings["authorizedkeysfile"] == "/run/nixvmd-ssh/authorized_keys"
    assert settings["port"] == "22"


def test_the_job_carries_the_config_the_host_key_and_the_client_key(tmp_path: Path) -> None:
    keys = ssh_keys(tmp_path)
    env = dict(guest_sshd_env(keys))
    assert env["NIXVMD_SSHD"] == SSHD
    assert env["NIXVMD_SSHD_CONFIG"] == sshd_config().strip()
    assert env["NIXVMD_SSH_HOST_KEY"] == keys.host_key.read_text().strip()
    assert env["NIXVMD_SSH_AUTHORIZED_KEYS"] == keys.client_public.read_text().strip()


def test_the_client_offers_only_nixvmds_key_and_checks_the_pinned_host_key(tmp_path: Path) -> None:
    keys = ssh_keys(tmp_path)
    argv = ssh_argv(keys, "127.0.0.1", 40022, pinned=True)
    assert argv[0] == "ssh" and argv[-1] == "root@127.0.0.1"
    assert argv[argv.index("-i") + 1] == str(keys.client_key)
    assert argv[argv.index("-p") + 1] == "40022"
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert {"IdentitiesOnly=yes", "PasswordAuthentication=no", "StrictHostKeyChecking=yes"} <= options
    assert f"HostKeyAlias={HOST_ALIAS}" in options
    assert f"UserKnownHostsFile={keys.known_hosts}" in options
    assert shlex.split(ssh_command(keys, "127.0.0.1", 40022, pinned=True)) == argv


def test_a_guest_with_its_own_host_key_is_not_checked_against_nixvmds(tmp_path: Path) -> None:
    argv = ssh_argv(ssh_keys(tmp_path), "127.0.0.1", 40022, pinned=False)
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert "StrictHostKeyChecking=no" in options and "UserKnownHostsFile=/dev/null" in options
    assert not any(o.startswith("HostKeyAlias") for o in options)
