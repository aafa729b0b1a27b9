"""What a failed test leaves for whoever reads CI's output: the daemon's log and the console of
every run that ended without verdicts of the kernel's own (error, timeout, crashed).

Nothing under pytest's tmp_path outlives a CI machine, and "the run ended `timeout`" says
nothing about whether the guest stalled in its boot, the command hung or nixvmd lost its
console. tests/conftest.py registers the hook.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from nixvmd.results.record import Outcome

TAIL_LINES = 60
UNEXPECTED = (Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASHED)  # no verdict of the kernel's own tests


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def sections(tmp_path: Path) -> list[tuple[str, str]]:
    """(title, text) for every daemon log under `tmp_path`, and for every run that ended in
    one of UNEXPECTED: its reason and its console's and QEMU's last lines."""
    out: list[tuple[str, str]] = []
    for log in sorted(tmp_path.rglob("daemon.log")):
        out.append((f"daemon log {log.relative_to(tmp_path)} (last {TAIL_LINES} lines)", _tail(log)))
    for record in sorted(tmp_path.rglob("runs/*/run.json")):
        try:
            run: dict[str, Any] = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if run.get("outcome") not in UNEXPECTED:
            continue
        run_dir = record.parent
        where = run_dir.relative_to(tmp_path)
        out.append((f"run {where}: {run.get('outcome')}", str(run.get("reason", ""))))
        for name in ("console.log", "qemu.log"):
            if (run_dir / name).is_file():
                out.append((f"run {where} {name} (last {TAIL_LINES} lines)", _tail(run_dir / name)))
    return out


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and report.when in ("call", "teardown") and isinstance(tmp_path, Path):
        for title, text in sections(tmp_path):
            report.sections.append((title, text))
    return report
