"""A real second Nix store reached over SSH on the loopback interface: a remote builder for tests.

Debian's sshd runs on a free port with a host key of its own and one authorized client key
(thrown away with the test), in a mount namespace where another directory is bind-mounted
on /nix, so its forced command `nix-store --serve --write` serves a store of its own: what
Nix builds there lands in `store`, and what the local store has must really be copied
there first. Root's home there is an empty directory too: the session's shell reads none of
this machine's dotfiles (a shell profile that waits on a lock would hang every session).
It also runs in a PID namespace of its own (sshd its first process): stopping
the builder ends sshd, every session and every build in it, so nothing outlives it.

The client side is `machine` (Nix's machine syntax, the host an alias) and `env`: NIX_SSHOPTS
names an ssh config that gives the alias the port, the client key and a known_hosts file
holding the builder's host key, with StrictHostKeyChecking on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import exits_within

SSHD = Path("/usr/sbin/sshd")
ALIAS = "nixvmd-test-builder"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> str:
    """A fresh ed25519 key pair at `path`; its public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", ALIAS, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class NixBuilder:
    """A running loopback builder (see the module's docstring); `stop()` ends it and all it started."""

    directory: Path
    nix_dir: Path  # bind-mounted on /nix inside the builder
    port: int
    features: tuple[str, ...]
    process: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)  # sshd's own log (stderr), as it goes
    listening: threading.Event = field(default_factory=threading.Event)

    @property
    def store(self) -> Path:
        """The builder's /nix/store, seen from here."""
        return self.nix_dir / "store"

    @property
    def machine(self) -> str:
        """The builder in Nix's machine syntax (for --builders or [distribute] builders)."""
        features = ",".join(self.features) or "-"
        return f"ssh://{ALIAS} x86_64-linux - 2 1 {features}"

    @property
    def env(self) -> dict[str, str]:
        """What a Nix client's environment needs to reach the builder."""
        return {"NIX_SSHOPTS": f"-F {self.directory / 'ssh_config'}"}

    def holds(self, path: Path) -> bool:
        """True when the builder's store has `path` (a local store path's name)."""
        return (self.store / path.name).exists()

    def running(self) -> bool:
        return self.process.poll() is None

    def sshd_pid(self) -> int:
        """sshd's pid here (the first process of the builder's PID namespace)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0])

    def sessions(self) -> list[int]:
        """The pids of every process in the builder but sshd: its sessions and their builds."""
        sshd = self.sshd_pid()
        return [pid for pid in in_namespace(os.readlink(f"/proc/{sshd}/ns/pid")) if pid != sshd]

    def stop(self) -> None:
        """End sshd and everything in its namespaces (sessions, nix-store --serve, builds).

        unshare ignores SIGTERM while it waits, so sshd, the first process of the PID
        namespace, gets it; when it ends the kernel kills every other process there, and
        unshare's wait (then ours) returns once they are all gone.
        """
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(self.sshd_pid(), signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()  # --kill-child: sshd gets SIGKILL, and the namespace ends with it
            self.process.wait()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            if "Server listening on 127.0.0.1" in line:
                self.listening.set()
        self.listening.set()  # sshd ended: whoever waits finds out by `running()`


def in_namespace(ns: str) -> list[int]:
    """Live processes in the PID namespace `ns` (what /proc/<pid>/ns/pid links to)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == ns:
                    found.append(int(entry.name))
    return found


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait (on pidfds, at most `timeout` seconds each) until `pids` have ended; those still alive."""
    return [pid for pid in pids if not exits_within(pid, timeout)]


def _sshd_config(directory: Path, port: int) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {directory / 'host_key'}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "ForceCommand nix-store --serve --write",
            "",
        ]
    )


def _ssh_config(directory: Path, port: int) -> str:
    return "\n".join(
        [
            f"Host {ALIAS}",
            "    HostName 127.0.0.1",
            f"    Port {port}",
            "    User root",
            f"    IdentityFile {directory / 'client_key'}",
            "    IdentitiesOnly yes",
            f"    HostKeyAlias {ALIAS}",
            f"    UserKnownHostsFile {directory / 'known_hosts'}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "",
        ]
    )


def start_builder(directory: Path, features: Sequence[str] = ("kvm",)) -> NixBuilder:
    """A builder whose files live in `directory` (keys, configs, its /nix); it is listening on return."""
    if not SSHD.exists():
        raise RuntimeError(f"no {SSHD}: install openssh-server (scripts/setup.sh does)")
    directory.mkdir(parents=True, exist_ok=True)
    nix_dir = directory / "nix"
    (nix_dir / "store").mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host_key = _keygen(directory / "host_key")
    client_key = _keygen(directory / "client_key")
    (directory / "authorized_keys").write_text(f"restrict {client_key}\n")
    (directory / "known_hosts").write_text(f"{ALIAS} {host_key}\n")
    port = _free_port()
    (directory / "sshd_config").write_text(_sshd_config(directory, port))
    (directory / "ssh_config").write_text(_ssh_config(directory, port))
    home = directory / "home"  # root's home in the builder: no dotfiles of this machine's
    home.mkdir(exist_ok=True)
    # The store is opened once before sshd takes sessions: two first sessions at once would
    # both make its var/nix layout (gcroots/profiles), and one of them fails on the other's.
    script = (
        'mount --bind "$1" /nix && mount --bind "$4" /root && nix-store --init && exec "$2" -D -e -f "$3"'
    )
    argv = [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
        "sh", "-c", script, "sh", str(nix_dir), str(SSHD), str(directory / "sshd_config"), str(home),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    builder = NixBuilder(directory, nix_dir, port, tuple(features), process)
    threading.Thread(target=builder._read_log, daemon=True).start()
    if not builder.listening.wait(START_TIMEOUT_S) or not builder.running():
        builder.stop()
        raise RuntimeError(f"sshd did not come up on port {port}: {builder.log[-10:]}")
    return builder


@contextlib.contextmanager
def nix_builder(directory: Path, features: Sequence[str] = ("kvm",)) -> Iterator[NixBuilder]:
    """A loopback builder for the `with` block; stopped (with all it started) after it."""
    builder = start_builder(directory, features)
    try:
        yield builder
    finally:
        builder.stop()


_BUSYBOX_LOCK = threading.Lock()


def busybox_dir(directory: Path) -> Path:
    """A directory with a static busybox as bin/busybox and bin/sh, to be a derivation's builder.

    Made once per directory, under a lock: shards instantiate their derivations at once."""
    bin_dir = directory / "busybox" / "bin"
    with _BUSYBOX_LOCK:
        if not (bin_dir / "sh").exists():
            bin_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2("/bin/busybox", bin_dir / "busybox")
            os.symlink("busybox", bin_dir / "sh")
    return bin_dir.parent


def probe_derivation(directory: Path, name: str, script: str, features: Sequence[str] = ("kvm",)) -> Path:
    """Instantiate a derivation `name` whose builder is busybox sh running `script` ($out to write).

    `script` may use `$bb` for the busybox binary (its applets: `$bb sleep 9`). Returns the .drv.
    """
    bb = busybox_dir(directory)
    wanted = " ".join(f'"{f}"' for f in features)
    expression = directory / f"{name}.nix"
    expression.write_text(
        "derivation {\n"
        f'  name = "{name}";\n'
        '  system = "x86_64-linux";\n'
        f'  builder = "${{{bb}}}/bin/sh";\n'
        f'  bb = "${{{bb}}}/bin/busybox";\n'
        f"  args = [ \"-c\" ''{script}'' ];\n"
        f"  requiredSystemFeatures = [ {wanted} ];\n"
        "}\n"
    )
    done = subprocess.run(
        ["nix-instantiate", str(expression)], check=True, capture_output=True, text=True, timeout=120
    )
    return Path(done.stdout.strip().splitlines()[-1])
