"""The failure report's sections (tests/failure_report.py): what CI's output keeps of a failed VM test."""

from __future__ import annotations

import json
from pathlib import Path

from tests.failure_report import TAIL_LINES, sections


def _run(state: Path, run_id: str, outcome: str) -> Path:
    run_dir = state / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"outcome": outcome, "reason": f"why {run_id}"}))
    (run_dir / "console.log").write_text("".join(f"console {n}\n" for n in range(100)))
    return run_dir


def test_the_daemon_log_and_the_consoles_of_runs_without_verdicts_are_reported(tmp_path: Path) -> None:
    (tmp_path / "daemon.log").write_text("".join(f"log {n}\n" for n in range(100)))
    _run(tmp_path / "state", "1-timeout", "timeout")
    _run(tmp_path / "state", "2-passed", "passed")
    _run(tmp_path / "state", "3-error", "error")
    (tmp_path / "state" / "runs" / "4-broken").mkdir()
    (tmp_path / "state" / "runs" / "4-broken" / "run.json").write_text("{")

    found = dict(sections(tmp_path))

    assert list(found) == [
        f"daemon log daemon.log (last {TAIL_LINES} lines)",
        "run state/runs/1-timeout: timeout",
        f"run state/runs/1-timeout console.log (last {TAIL_LINES} lines)",
        "run state/runs/3-error: error",
        f"run state/runs/3-error console.log (last {TAIL_LINES} lines)",
    ]
    log = found[f"daemon log daemon.log (last {TAIL_LINES} lines)"].splitlines()
    assert log[0] == f"log {100 - TAIL_LINES}" and log[-1] == "log 99"
    assert found["run state/runs/1-timeout: timeout"] == "why 1-timeout"
