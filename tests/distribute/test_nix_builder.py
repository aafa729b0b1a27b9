"""The loopback builder itself: a store of its own, strict host keys, and nothing left when it stops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.nix_builder import ALIAS, in_namespace, nix_builder, probe_derivation


def test_stopping_the_builder_ends_sshd_its_sessions_and_their_builds(tmp_path: Path) -> None:
    drv = probe_derivation(tmp_path, f"nixvmd-never-ends-{os.getpid()}", "echo started; exec $bb sleep 3600")
    with nix_builder(tmp_path / "builder") as builder:
        env = dict(os.environ, **builder.env)
        argv = ["nix-store", "--realise", str(drv), "--max-jobs", "0", "--builders", builder.machine]
        build = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert build.stderr is not None
        for line in build.stderr:
            if line.strip() == "started":
                break
        ns = os.readlink(f"/proc/{builder.sshd_pid()}/ns/pid")
        assert len(in_namespace(ns)) >= 3, "sshd, its session's nix-store --serve and the build"

    assert in_namespace(ns) == []
    assert build.wait(60) != 0, "the build lost its builder"


def test_a_builder_with_another_host_key_is_refused(tmp_path: Path) -> None:
    with nix_builder(tmp_path / "builder") as builder:
        known = builder.directory / "known_hosts"
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        known.write_text(f"{ALIAS} {other.with_suffix('.pub').read_text()}")
        config = builder.directory / "ssh_config"

        said = subprocess.run(
            ["ssh", "-F", str(config), ALIAS, "true"], capture_output=True, text=True, timeout=60
        )

    assert said.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in said.stderr
