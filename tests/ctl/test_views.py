"""nixvmctl's words for the daemon's answers: history lines, command replies, the baseline."""

from __future__ import annotations

from typing import Any

from nixvmd.ctl.format import format_history
from nixvmd.ctl.replies import format_baseline, format_reply


def _run(**changes: Any) -> dict[str, Any]:
    run = {
        "id": "20261128-120000-001",
        "outcome": "passed",
        "kernel_version": "6.1.192",
        "passed": 12,
        "failed": 0,
        "skipped": 1,
        "regressions": [],
        "fixes": [],
        "flaky": [],
        "duration_s": 21.25,
        "started_at": 1_800_000_000.0,
        "narrowed_to": [],
    }
    return {**run, **changes}


def test_history_has_a_header_and_a_line_per_run() -> None:
    text = format_history([_run(), _run(id="20261128-120500-001", outcome="failed", passed=11, failed=1)])
    header, first, second = text.splitlines()
    assert header.split()[:4] == ["RUN", "STARTED", "OUTCOME", "BUILD"]
    assert "PASS" in header and "FAIL" in header and "SKIP" in header and "TIME" in header
    assert first.startswith("20261128-120000-001") and "passed" in first and "21.2s" in first
    assert second.split()[3:9] == ["failed", "6.1.192", "11", "1", "1", "21.2s"]


def test_history_marks_narrowed_runs_and_shows_fixes_and_regressions() -> None:
    text = format_history(
        [
            _run(regressions=["generic/475"]),
            _run(narrowed_to=["generic/475", "generic/476"], fixes=["generic/475"]),
            _run(),
        ]
    )
    _, regressed, narrowed, whole = text.splitlines()
    assert regressed.endswith("regressions: generic/475")
    assert narrowed.endswith("narrowed to generic/475, generic/476; fixed: generic/475")
    assert "narrowed" not in whole and "fixed" not in whole


def test_history_names_the_build_when_the_record_has_one() -> None:
    text = format_history([_run(build="6.1.192 #7 a1b2c3d-dirty"), _run()])
    _, built, plain = text.splitlines()
    assert "6.1.192 #7 a1b2c3d-dirty" in built
    assert plain.split()[4] == "6.1.192"  # older records: the release


def test_history_keeps_long_lists_to_one_line() -> None:
    line = format_history([_run(regressions=[f"generic/{n:03d}" for n in range(10)])]).splitlines()[1]
    assert line.endswith("regressions: generic/000, generic/001, generic/002, generic/003 +6 more")


def test_history_without_runs() -> None:
    assert format_history([]) == "no runs yet"


def test_stop_says_which_run_it_cancelled() -> None:
    assert format_reply("stop", {"cancelled": True, "run_id": "20261128-120000-001"}) == (
        "cancelled run 20261128-120000-001"
    )
    assert format_reply("stop", {"cancelled": False, "run_id": None}) == "nothing was running"


def test_pause_and_resume_in_words() -> None:
    assert format_reply("pause", {"paused": True}) == (
        "paused: changes are noted, nothing starts until nixvmctl resume"
    )
    assert format_reply("resume", {"paused": False, "plan": None}) == "resumed; nothing changed while paused"
    resumed = format_reply("resume", {"paused": False, "plan": "new kernel: run with the image as it is"})
    assert resumed == "resumed; changes made while paused: new kernel: run with the image as it is"


def test_run_request_in_words_never_a_dict_dump() -> None:
    reply = {
        "plan": "run requested: run with the image as it is",
        "tests": ["generic/001"],
        "kernel_version": "6.1.0-13-cloud-amd64",
        "starts": True,
        "cancels": False,
    }
    assert (
        format_reply("run", reply) == "run requested: new run with 6.1.0-13-cloud-amd64 (tests: generic/001)"
    )
    whole = format_reply("run", {**reply, "tests": [], "cancels": True})
    assert whole == "run requested: new run with 6.1.0-13-cloud-amd64; the run in progress is cancelled"
    waiting = {**reply, "plan": "run requested: run when the image build ends", "starts": False}
    assert format_reply("run", waiting) == "run requested: run when the image build ends (tests: generic/001)"
    for text in (format_reply("run", reply), whole):
        assert "plan:" not in text and "[" not in text
    fresh = format_reply("run", {**reply, "tests": [], "fresh": True})
    assert (
        fresh
        == "run requested: new run with 6.1.0-13-cloud-amd64, fresh: no result Nix built before is reused"
    )


def test_baseline_list_shows_conditions_and_comments() -> None:
    reply = {
        "baseline": "/s/baseline/xfstests",
        "entries": [
            {"test": "generic/475", "conditions": [], "comment": "flaky everywhere", "line": 3},
            {"test": "generic/476", "conditions": [">= 6.1", "< 6.6"], "comment": "fixed in 6.6", "line": 4},
        ],
    }
    lines = format_baseline("list", reply).splitlines()
    assert lines[0] == "/s/baseline/xfstests: 2 known failures"
    assert lines[1].split() == ["generic/475", "#", "flaky", "everywhere"]
    assert lines[2].split("  ")[1:] == ["generic/476", "[>= 6.1, < 6.6]", "# fixed in 6.6"]
    empty = format_baseline("list", {"baseline": "/s/b", "entries": []})
    assert empty.startswith("no known failures (/s/b)")


def test_baseline_accept_and_remove_in_words() -> None:
    accepted = {"baseline": "/s/b", "run_id": "r1", "accepted": ["a", "b"]}
    assert format_baseline("accept", accepted) == "/s/b: accepted from run r1: a, b"
    mixed = {**accepted, "accepted": [], "already_known": ["c"], "left_out": ['say "hi"']}
    said = format_baseline("accept", mixed).splitlines()
    assert said[:2] == ["/s/b: accepted from run r1: no new failures", "already known: c"]
    assert said[2].startswith("""not written: 'say "hi"' (the file cannot name a test""")
    assert format_baseline("remove", {"baseline": "/s/b", "removed": ["a"]}) == "/s/b: removed a"
