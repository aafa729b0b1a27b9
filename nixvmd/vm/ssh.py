"""Reaching a guest by ssh: nixvmd's keys, the guest sshd's config, and the client's command line.

nixvmd makes two ed25519 keys once, in `<state_dir>/ssh/`: the client key `nixvmctl ssh`
logs in with, and the host key a guest's sshd presents (the direct backend hands it to
the guest in the run's job). Since every guest presents that one host key, the client
checks it strictly against `known_hosts` under the alias `nixvmd-guest`, whatever port
the run was given. A guest with a host key of its own (a NixOS image's) cannot be
checked that way; its command line says so by not pinning one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import NixvmdError

HOST_ALIAS = "nixvmd-guest"
GUEST_USER = "root"
GUEST_DIR = "/run/nixvmd-ssh"  # where the agent writes the guest sshd's files (guest view)
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshKeys:
    """The key files in `directory` (`<state_dir>/ssh`)."""

    directory: Path

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def client_public(self) -> Path:
        return self.directory / "id_ed25519.pub"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def host_public(self) -> Path:
        return self.directory / "ssh_host_ed25519_key.pub"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"


def ssh_keys(state_dir: Path) -> SshKeys:
    """nixvmd's keys under `state_dir`, made the first time (under a lock: daemons may share it).

    NixvmdError when ssh-keygen is missing or fails.
    """
    keys = SshKeys(state_dir / "ssh")
    keys.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(keys.directory / ".lock"):
        for key in (keys.client_key, keys.host_key):
            if not (key.is_file() and key.with_suffix(".pub").is_file()):
                _keygen(key)
        kind, blob = keys.host_public.read_text().split()[:2]
        line = f"{HOST_ALIAS} {kind} {blob}\n"
        if not keys.known_hosts.is_file() or keys.known_hosts.read_text() != line:
            keys.known_hosts.write_text(line)
    return keys


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _keygen(key: Path) -> None:
    """An ed25519 key pair at `key` and `key`.pub, written aside and renamed into place."""
    aside = key.with_name(f".{key.name}.new")
    for path in (aside, Path(f"{aside}.pub")):
        path.unlink(missing_ok=True)
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"nixvmd {key.name}", "-f", str(aside)]
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NixvmdError("nixvmd's ssh keys need ssh-keygen; install openssh-client") from None
    except subprocess.CalledProcessError as exc:
        raise NixvmdError(f"ssh-keygen could not make {key}: {exc.stderr.strip()}") from None
    os.rename(f"{aside}.pub", key.with_suffix(".pub"))
    os.rename(aside, key)


def sshd_config(port: int = 22) -> str:
    """The guest sshd's config: root, by nixvmd's key only; files under GUEST_DIR.

    `StrictModes no`: the guest sees the host's root through an overlay, whose owners and
    modes (of /root, say) are the host's business. `UsePAM no`: PAM's stack is the host's,
    made for its own logins.
    """
    return "\n".join(
        [
            "# nixvmd: the guest's sshd; root logs in by nixvmd's key, nothing else is accepted",
            f"Port {port}",
            "ListenAddress 0.0.0.0",
            f"HostKey {GUEST_DIR}/ssh_host_ed25519_key",
            f"PidFile {GUEST_DIR}/sshd.pid",
            f"AuthorizedKeysFile {GUEST_DIR}/authorized_keys",
            f"AllowUsers {GUEST_USER}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "PermitEmptyPasswords no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def guest_sshd_env(keys: SshKeys) -> tuple[tuple[str, str], ...]:
    """What the direct backend's job carries for the agent to start the host's sshd in the guest."""
    return (
        ("NIXVMD_SSHD", SSHD),
        ("NIXVMD_SSHD_CONFIG", sshd_config().strip()),
        ("NIXVMD_SSH_HOST_KEY", keys.host_key.read_text().strip()),
        ("NIXVMD_SSH_AUTHORIZED_KEYS", keys.client_public.read_text().strip()),
    )


def ssh_argv(keys: SshKeys, host: str, port: int, *, pinned: bool) -> list[str]:
    """The ssh client's command line to the guest (without a remote command).

    Only nixvmd's key is offered and no password asked. `pinned`: the guest presents
    nixvmd's host key, checked strictly; else the guest's own key is taken unchecked
    (a fresh VM on a loopback port, nothing kept).
    """
    if pinned:
        hosts = ["-o", f"HostKeyAlias={HOST_ALIAS}", "-o", f"UserKnownHostsFile={keys.known_hosts}"]
        hosts += ["-o", "StrictHostKeyChecking=yes"]
    else:
        hosts = ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
    return [
        "ssh",
        "-i",
        str(keys.client_key),
        "-p",
        str(port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        *hosts,
        "-o",
        "LogLevel=ERROR",
        f"{GUEST_USER}@{host}",
    ]


def ssh_command(keys: SshKeys, host: str, port: int, *, pinned: bool) -> str:
    """`ssh_argv` as one line to paste into a shell (status's `current.ssh.command`)."""
    return shlex.join(ssh_argv(keys, host, port, pinned=pinned))
