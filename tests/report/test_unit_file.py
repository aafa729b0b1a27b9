"""contrib/systemd: systemd-analyze accepts the user unit and the README's sandbox drop-in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNIT = CONTRIB / "nixvmd.service"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd)",
)


def user_home(tmp_path: Path) -> Path:
    """A home in which %h/.local/bin/nixvmd exists: verify rejects a missing ExecStart."""
    home = tmp_path / "home"
    binary = home / ".local" / "bin" / "nixvmd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    (home / ".config" / "systemd" / "user").mkdir(parents=True)
    return home


def verify(home: Path, tmp_path: Path, unit: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify` as it behaves for the user owning `home`.

    Without a user session XDG_RUNTIME_DIR must be set by hand, and %h follows $HOME.
    Unknown keys and bad values are only warnings (exit status 0), so callers check stderr.
    """
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime_dir))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env.pop(name, None)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", unit],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    result = verify(user_home(tmp_path), tmp_path, str(UNIT))
    assert (result.returncode, result.stderr) == (0, "")


def test_verify_does_catch_mistakes(tmp_path: Path) -> None:
    # Guards the test above: a clean verify means something only if a bad unit is not clean.
    broken = tmp_path / "nixvmd.service"
    broken.write_text(UNIT.read_text().replace("Type=notify", "Type=notifyy"))
    result = verify(user_home(tmp_path), tmp_path, str(broken))
    assert "Failed to parse service type" in result.stderr


def test_sandbox_drop_in_from_the_readme_verifies(tmp_path: Path) -> None:
    readme = (CONTRIB / "README.md").read_text()
    match = re.search(r"```ini\n# ~/\.config/(\S+)\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no sandbox drop-in block"
    home = user_home(tmp_path)
    drop_in = home / ".config" / match.group(1)
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text(match.group(2))
    shutil.copy(UNIT, home / ".config" / "systemd" / "user" / UNIT.name)
    result = verify(home, tmp_path, "nixvmd.service")
    assert (result.returncode, result.stderr) == (0, "")


def test_unit_promises_what_the_daemon_relies_on() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"] == "30s"
    assert settings["Restart"] == "on-failure"
    assert settings["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert settings["ExecStart"].startswith("%h/.local/bin/nixvmd")
    assert settings["WantedBy"] == "default.target"
