"""How a nixvmctl that got no answer must end: non-zero, nothing on stdout, one sentence on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CTL = [sys.executable, "-m", "nixvmd.ctl.main"]


def run_ctl(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nixvmctl --socket SOCKET ARGS...` to its end."""
    return subprocess.run(
        [*CTL, "--socket", str(socket_path), *args], capture_output=True, text=True, timeout=60
    )


def assert_failed_with_one_sentence(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """`done` exited non-zero with one `nixvmctl: ` line holding `words` and printed nothing else."""
    assert done.returncode != 0, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nixvmctl: ")
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]
