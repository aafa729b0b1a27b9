"""`nixvmctl run --gdb` on the KUnit kernel with debug info: Debian's gdb attaches, breaks, continues."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KERNEL_CACHE, DaemonProcess, KernelTree

pytestmark = [pytest.mark.vm, pytest.mark.slow]

# A KUnit case this kernel runs at boot (lib/kunit/kunit-example-test.c).
BREAK_AT = "example_simple_test"
GDB_SECONDS = 600


def _nixvmctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _kunit_tree(tmp_path: Path) -> KernelTree:
    """A tree with the KUnit kernel's bzImage and its vmlinux, as `make` leaves them."""
    built = KERNEL_CACHE / "kunit-tiny"
    if not (built / "bzImage").is_file() or not (built / "src" / "vmlinux").is_file():
        pytest.fail(f"no KUnit kernel with its vmlinux in {built}: run scripts/build-kunit-kernel.sh first")
    tree = KernelTree(tmp_path / "linux")
    tree.image.parent.mkdir(parents=True)
    (tree.root / "vmlinux").symlink_to(built / "src" / "vmlinux")
    tree.write_in_place((built / "bzImage").read_bytes())
    return tree


def test_gdb_attaches_through_the_printed_command_breaks_in_a_kunit_test_and_the_run_passes(
    tmp_path: Path, short_tmp: Path
) -> None:
    tree = _kunit_tree(tmp_path)
    socket = short_tmp / "c.sock"
    config = tmp_path / "nixvmd.toml"
    config.write_text(
        f"""
[kernel]
tree = "{tree.root}"

[vm]
accel = "tcg"
memory = "256M"
cpus = 1
boot_timeout = "120s"

[suite]
kind = "kunit"
timeout = "120s"

[notify]
on = []

[daemon]
state_dir = "{tmp_path / "state"}"
socket = "{socket}"
"""
    )
    daemon = DaemonProcess(tmp_path, config, socket)
    daemon.start()
    events = daemon.events(["run"])
    try:
        asked = _nixvmctl(socket, "run", "--gdb")
        assert asked.returncode == 0, asked.stderr
        assert "nixvmctl gdb prints the command" in asked.stdout

        up = events.wait_for(lambda e: e.get("phase") == "gdb", 120)
        status = daemon.status()
        current = status["current"]
        assert current["run_id"] == up["run_id"]
        assert current["phase"] == "waiting for gdb"  # held at the first instruction
        assert status["state"] == "booting"
        printed = _nixvmctl(socket, "gdb")
        assert printed.returncode == 0, printed.stderr
        command = shlex.split(printed.stdout.strip())
        assert command == current["gdb"]["argv"]
        assert command[:2] == ["gdb", str(tree.root / "vmlinux")]

        script = tmp_path / "gdb.cmds"
        script.write_text(f"break {BREAK_AT}\ncontinue\nbacktrace 1\ncontinue\n")
        # The printed command as it is, in batch mode with the test's commands after its own.
        gdb = subprocess.run(
            [command[0], "-batch", "-nx", *command[1:], "-x", str(script)],
            capture_output=True,
            text=True,
            timeout=GDB_SECONDS,
        )
        output = gdb.stdout + gdb.stderr
        assert f"Breakpoint 1, {BREAK_AT} (" in output, output
        assert "kunit-example-test.c" in output, output

        end = events.run_end(240)
        assert end["run_id"] == up["run_id"]
        assert end["outcome"] == "passed", end
        record = json.loads((tmp_path / "state" / "runs" / end["run_id"] / "run.json").read_text())
        assert "nokaslr" in " ".join(record["command"])
        assert any(t["name"] == f"example.{BREAK_AT}" and t["status"] == "pass" for t in record["tests"])
    finally:
        events.close()
        assert daemon.stop() == 0, daemon.text_log()
