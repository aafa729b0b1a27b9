"""JobWindow: the job's stretch of the console, between the agent's start and exit frames."""

from __future__ import annotations

from pathlib import Path

from nixvmd.guest.protocol import MAGIC
from nixvmd.suite.base import OUTPUT_LINES_KEPT, JobWindow


def test_only_the_jobs_own_non_blank_lines_are_kept_and_frames_are_left_out() -> None:
    window = JobWindow()
    window.console_line("boot message before the job")
    window.guest_event("start")
    assert window.running
    for line in ["first", "", "   ", f"{MAGIC} abc 3 progress x {MAGIC}", "last"]:
        window.console_line(line)
    window.guest_event("exit")
    window.console_line("shutdown message after the job")
    assert (window.started, window.finished, window.running) == (True, True, False)
    assert list(window.tail) == ["first", "last"]


def test_the_tail_is_bounded_and_saved_as_output_log(tmp_path: Path) -> None:
    window = JobWindow()
    window.guest_event("start")
    for n in range(OUTPUT_LINES_KEPT + 5):
        window.console_line(f"line {n}")
    assert window.save(tmp_path) == "output.log"
    saved = (tmp_path / "output.log").read_text().splitlines()
    assert saved[0] == "line 5" and len(saved) == OUTPUT_LINES_KEPT
    headline, *rest = window.failure("exit status 1").splitlines()
    assert headline == f"exit status 1: line {OUTPUT_LINES_KEPT + 4}"
    assert rest[-1] == f"line {OUTPUT_LINES_KEPT + 4}"
