"""The agent's load_modules, run by real shells with a stand-in insmod: order, deferral, errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nixvmd.guest.protocol import parse_frame
from nixvmd.image.nix_launch import share_modules

AGENT = Path(__file__).resolve().parents[2] / "nixvmd" / "guest" / "agent.sh"
SHELLS = [s for s in ("/bin/sh", "/bin/busybox") if Path(s).is_file()]

# Logs each module it is given; refuses any whose name has "bad" in it, as insmod does. A
# shell function, so it wins over busybox's own insmod applet too.
FAKE_INSMOD = """insmod() {
printf '%s\\n' "$1" >>"$INSMOD_LOG"
case "$1" in
*bad*) echo "insmod: ERROR: could not insert module $1: Unknown symbol in module" >&2; return 1 ;;
esac
}
"""


def agent_function(name: str) -> str:
    """One function of agent.sh, as its text."""
    match = re.search(rf"^{name}\(\) {{\n.*?^}}\n", AGENT.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"agent.sh has no {name}()"
    return match.group(0)


def run_load_modules(shell: str, tmp_path: Path, shared: Path, script: str) -> tuple[str, list[str]]:
    """Run `script` after agent.sh's send and load_modules; returns (stdout, insmod calls)."""
    log = tmp_path / "insmod.log"
    frames = tmp_path / "frames"
    prelude = f"seq=0\nchan={frames}\nNIXVMD_NONCE=0\nNIXVMD_SHARED_DIR={shared}\n"
    text = prelude + FAKE_INSMOD + agent_function("send") + agent_function("load_modules") + script
    argv = [shell, "sh", "-c", text] if shell.endswith("busybox") else [shell, "-c", text]
    env = {"PATH": "/usr/bin:/bin", "INSMOD_LOG": str(log)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    calls = log.read_text().splitlines() if log.exists() else []
    sent = frames.read_text() if frames.exists() else ""
    return done.stdout + sent, calls


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    if shutil.which(request.param) is None:
        pytest.skip(f"no {request.param}")
    return str(request.param)


def _shared(tmp_path: Path, *names: str) -> Path:
    shared = tmp_path / "shared"
    kos = []
    for name in names:
        ko = tmp_path / "linux" / name
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(b"ko")
        kos.append(ko)
    share_modules(kos, shared)
    return shared


def test_the_shared_modules_load_in_order_once_the_job_is_known(shell: str, tmp_path: Path) -> None:
    shared = _shared(tmp_path, "a/one.ko", "b/two.ko", "c/three.ko")
    out, calls = run_load_modules(
        shell,
        tmp_path,
        shared,
        "load_modules; echo before-job=$?\n"
        "NIXVMD_NONCE=abc123\n"
        "load_modules; echo after-job=$?\n"
        "load_modules; echo again=$?\n",
    )
    assert "before-job=0" in out and "after-job=0" in out and "again=0" in out
    # Before the job (no nonce) nothing loads: a failure could not be reported for this run.
    assert calls == [
        f"{shared}/modules/00-one.ko",
        f"{shared}/modules/01-two.ko",
        f"{shared}/modules/02-three.ko",
    ]
    assert "@@NIXVMD@@" not in out


def test_a_module_that_will_not_load_is_reported_and_stops_the_rest(shell: str, tmp_path: Path) -> None:
    shared = _shared(tmp_path, "one.ko", "bad.ko", "three.ko")
    out, calls = run_load_modules(shell, tmp_path, shared, "NIXVMD_NONCE=abc123\nload_modules; echo rc=$?\n")
    assert "rc=1" in out
    assert calls == [f"{shared}/modules/00-one.ko", f"{shared}/modules/01-bad.ko"]
    frames = [f for f in map(parse_frame, out.splitlines()) if f is not None]
    assert [(f.nonce, f.event) for f in frames] == [("abc123", "module_error")]
    assert frames[0].argument.startswith(f"{shared}/modules/01-bad.ko: insmod: ERROR")
    assert "Unknown symbol in module" in frames[0].argument


def test_no_list_loads_nothing(shell: str, tmp_path: Path) -> None:
    out, calls = run_load_modules(
        shell, tmp_path, tmp_path / "none", "NIXVMD_NONCE=1\nload_modules; echo rc=$?\n"
    )
    assert "rc=0" in out
    assert calls == []
