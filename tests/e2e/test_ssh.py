"""ssh into a running guest: direct backend, host root shared, vm.network = "user", Debian's kernel.

The guest runs the host's own sshd (with nixvmd's host key) and the host's ssh client logs
in through the port QEMU forwards. The suite waits on a FIFO that only the test's ssh
session fills, so the run is certainly going on while the test logs in, and it ends when
the test says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

pytestmark = pytest.mark.vm

GO = "/run/nixvmd-test-go"
SUITE = f"mkfifo {GO} && read line < {GO} && echo released: $line"


def _nixvmctl(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(sock), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])),
    )


def _refused(access: dict[str, Any], *options: str) -> subprocess.CompletedProcess[str]:
    """An ssh login to the guest other than nixvmd's key (same port, same host key check)."""
    argv = [
        "ssh",
        "-p",
        str(access["port"]),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        *options,
        f"root@{access['host']}",
        "true",
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_nixvmctl_ssh_runs_a_command_in_the_running_guest_by_key_only(
    daemon_factory: Callable[[str], DaemonProcess],
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    sock = short_tmp / "ctl.sock"
    extra = "[image]\nshare_host_root = true\n"
    config = direct_config(kernel_tree, cloud_kernel, state, sock, command=SUITE, timeout="10m", extra=extra)
    config = config.replace("cpus = 2\n", 'cpus = 2\nnetwork = "user"\n')
    daemon = daemon_factory(config.replace("512M", "768M"))
    events = daemon.events(["ssh", "run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())

    up = events.wait_for(lambda e: e["event"] == "ssh" and bool(e.get("ready") or e.get("error")), 600)
    assert up["ready"] is True and up["error"] is None, up
    access = daemon.status()["current"]["ssh"]
    assert access["host"] == "127.0.0.1" and access["user"] == "root" and access["port"] == up["port"]
    assert f"-p {access['port']}" in access["command"]

    uname = _nixvmctl(sock, "ssh", "--", "uname", "-r")
    assert uname.returncode == 0, uname.stderr
    assert uname.stdout.strip() == cloud_kernel.release
    assert _nixvmctl(sock, "ssh", "--", "exit", "7").returncode == 7  # ssh's status is the user's

    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    by_other_key = _refused(access, "-i", str(other_key), "-o", "IdentitiesOnly=yes")
    assert by_other_key.returncode == 255 and "Permission denied (publickey)" in by_other_key.stderr
    # The server offers nothing but publickey: no password, no keyboard-interactive.
    by_password = _refused(
        access,
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    )
    assert by_password.returncode == 255 and "Permission denied (publickey)" in by_password.stderr

    # The write ends the suite, and the run's end quits the VM: the session may be cut ("closed
    # by remote host", 255) before it ends by itself. What it wrote, the guest read.
    release = _nixvmctl(sock, "ssh", "--", f"echo over-ssh > {GO}")
    assert release.returncode in (0, 255), release.stderr
    end = events.run_end(timeout=300)
    assert end["outcome"] == "passed", end
    run_dir = state / "runs" / end["run_id"]
    assert "released: over-ssh" in (run_dir / "console.log").read_text(errors="replace")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["ssh"] == {k: access[k] for k in ("host", "port", "user", "command")}

    after = _nixvmctl(sock, "ssh", "--", "true")
    assert after.returncode == 2 and "no run is going on" in after.stderr
