"""nixvmctl without a daemon: formatting, completion scripts, init's image detection, the unit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from nixvmd.config.load import load_config
from nixvmd.ctl import completion, console, init, service
from nixvmd.ctl.format import (
    FAILURES_SHOWN,
    failures_of,
    failures_of_summary,
    format_results,
    format_status,
    format_watch,
    progress_bar,
)
from nixvmd.ctl.main import build_parser, main
from nixvmd.errors import NixvmdError
from tests.kunit_failures import FAILED_TESTS, SIMPLE_HEADLINE, SIMPLE_TEST, kunit_record

STATUS: dict[str, Any] = {
    "state": "testing",
    "paused": False,
    "kernel": {"version": "6.8.0-rc3 (me@box) #1 SMP", "release": "6.8.0-rc3", "path": "/k", "mtime": 0.0},
    "kernel_error": None,
    "current": {
        "run_id": "r2",
        "phase": "testing",
        "test": "generic/013",
        "done": 12,
        "total": 96,
        "started_at": 100.0,
    },
    "last_run": {
        "id": "r1",
        "outcome": "failed",
        "kernel_version": "6.8.0-rc2",
        "passed": 94,
        "failed": 2,
        "skipped": 0,
        "duration_s": 812.5,
        "regressions": ["generic/475"],
    },
}


def test_progress_bar_fills_in_proportion() -> None:
    assert progress_bar(0, 10, 10) == "[..........] 0/10"
    assert progress_bar(5, 10, 10) == "[#####.....] 5/10"
    assert progress_bar(10, 10, 10) == "[##########] 10/10"
    assert progress_bar(3, None, 10).endswith("3 done")


def test_watch_frame_shows_phase_kernel_progress_and_failures() -> None:
    failures = failures_of(
        {
            "tests": [
                {"name": "generic/001", "status": "pass"},
                {"name": "generic/475", "status": "fail", "message": "output mismatch\n- a\n+ b"},
                {"name": "xfs/013", "status": "error", "message": ""},
            ]
        }
    )
    assert failures == ["generic/475: output mismatch", "xfs/013"]
    frame = format_watch(STATUS, failures, now=130.0, width=80)
    text = "\n".join(frame)
    assert frame[0].startswith("nixvmd: testing")
    assert "6.8.0-rc3" in frame[1]
    assert "r2 testing (30s)" in text
    assert "12/96" in text and "generic/013" in text
    assert "failed on 6.8.0-rc2: 94 passed, 2 failed" in text
    assert "regressions: generic/475" in text
    assert "  generic/475: output mismatch" in frame
    assert all(len(line) <= 80 for line in frame)


def test_watch_frame_when_idle_and_new() -> None:
    status = {**STATUS, "state": "idle", "paused": True, "current": None, "last_run": None, "kernel": None}
    text = "\n".join(format_watch(status, [], now=0.0, width=60))
    assert "idle (paused)" in text
    assert "(nothing running)" in text and "(none yet)" in text


def test_failures_are_capped() -> None:
    tests = [{"name": f"t/{i}", "status": "fail", "message": "x"} for i in range(9)]
    assert failures_of({"tests": tests}, at_most=3)[-1] == "... and 6 more"


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers after `words` (the last one is being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    call = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _nixvmctl"
    program = f'{script}\n{call}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completion_follows_the_parser() -> None:
    script = completion.bash_script(build_parser())
    assert "complete -F _nixvmctl nixvmctl" in script
    assert _complete(script, "nixvmctl", "st") == ["status", "stop"]
    assert "install-service" in _complete(script, "nixvmctl", "")
    assert _complete(script, "nixvmctl", "--socket", "/tmp/s", "config", "") == ["-h", "--help", "check"]
    assert "--once" in _complete(script, "nixvmctl", "watch", "--")
    assert _complete(script, "nixvmctl", "completion", "") == ["-h", "--help", "bash", "zsh"]
    # A value is expected after -n: no words offered.
    assert _complete(script, "nixvmctl", "history", "-n", "") == []


def test_zsh_completion_has_a_function_per_command() -> None:
    script = completion.zsh_script(build_parser())
    assert script.startswith("#compdef nixvmctl\n")
    for name in ("_nixvmctl", "_nixvmctl_status", "_nixvmctl_config_check", "_nixvmctl_install_service"):
        assert f"\n{name}() {{" in script
    assert "'--json[print the status object]'" in script
    assert "'1:shell:(bash zsh)'" in script
    # A help text with a colon or a quote must not break the spec it sits in.
    assert "guest'\\''s console (Ctrl-\\] detaches)" in script
    assert script.rstrip().endswith('_nixvmctl "$@"')


def test_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -F _nixvmctl nixvmctl" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("files", "expected", "found"),
    [
        (["arch/x86/boot/bzImage", "vmlinux"], "arch/x86/boot/bzImage", True),
        (["build/arch/x86/boot/bzImage", "vmlinux"], "build/arch/x86/boot/bzImage", True),
        (["bzImage"], "bzImage", True),
        (["vmlinux"], "vmlinux", True),
        ([], "arch/x86/boot/bzImage", False),
    ],
    ids=["in-tree", "O=build", "copied-bzImage", "vmlinux-only", "not-built"],
)
def test_init_detects_the_image(tmp_path: Path, files: list[str], expected: str, found: bool) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    guess = init.detect_image(tmp_path)
    assert (guess.path, guess.found) == (expected, found)


def test_init_writes_a_valid_config_once(tmp_path: Path) -> None:
    (tmp_path / "Kbuild").write_text("")
    (tmp_path / "arch/x86/boot").mkdir(parents=True)
    (tmp_path / "arch/x86/boot/bzImage").write_bytes(b"")
    assert init.is_kernel_tree(tmp_path)
    target, _ = init.write_config(tmp_path)
    config = load_config(target)
    assert config.kernel_image == tmp_path / "arch/x86/boot/bzImage"
    assert target.read_text().count("\n# ") > 10, "the file should explain its keys"
    before = target.read_text()
    with pytest.raises(NixvmdError, match="exists already"):
        init.write_config(tmp_path)
    assert target.read_text() == before


def test_unit_text_points_execstart_at_the_installed_nixvmd() -> None:
    template = service.unit_template()
    text = service.unit_text(template, Path("/opt/venv/bin/nixvmd"))
    assert "ExecStart=/opt/venv/bin/nixvmd --config %E/nixvmd/config.toml\n" in text
    assert text.replace("/opt/venv/bin/nixvmd", "%h/.local/bin/nixvmd") == template
    odd = service.unit_text(template, Path("/home/a b/100%/nixvmd"))
    assert 'ExecStart="/home/a b/100%%/nixvmd" --config' in odd


def test_install_refuses_to_replace_a_different_unit(tmp_path: Path) -> None:
    target = tmp_path / "systemd/user/nixvmd.service"
    service.install(target, "one\n", force=False)
    service.install(target, "one\n", force=False)  # the same again is fine
    with pytest.raises(NixvmdError, match="--force"):
        service.install(target, "two\n", force=False)
    service.install(target, "two\n", force=True)
    assert target.read_text() == "two\n"


def test_console_shows_lines_with_crlf_and_ends_with_the_run() -> None:
    assert console.shown({"event": "console", "line": "hello"}) == (b"hello\r\n", False)
    assert console.shown({"event": "console-bytes", "text": "/ # "}) == (b"/ # ", False)
    text, over = console.shown({"event": "dropped", "count": 3})
    assert b"3 console lines dropped" in text and not over
    text, over = console.shown({"event": "run", "phase": "end", "run_id": "r", "outcome": "passed"})
    assert over and b"passed" in text


def test_results_show_each_failure_headline_before_its_details(tmp_path: Path) -> None:
    text = format_results(kunit_record(tmp_path).to_json())

    lines = text.splitlines()
    at = lines.index(f"  FAIL {SIMPLE_TEST}")
    assert lines[at + 1] == f"         {SIMPLE_HEADLINE}"
    assert lines[at + 2 : at + 4] == [
        "           example_simple_test: initializing",
        "           example_simple_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29",
    ]


def test_status_and_watch_name_the_last_run_s_failures_with_headlines(tmp_path: Path) -> None:
    last_run = kunit_record(tmp_path).summary()
    status = {**STATUS, "state": "idle", "current": None, "last_run": last_run}

    shown = format_status(status).splitlines()
    assert "failures:" in shown
    assert f"  {SIMPLE_TEST}: {SIMPLE_HEADLINE}" in shown
    assert FAILED_TESTS <= FAILURES_SHOWN and not any("... and" in line for line in shown)

    frame = format_watch(status, failures_of_summary(last_run), now=0.0, width=200)
    assert f"  {SIMPLE_TEST}: {SIMPLE_HEADLINE}" in frame


def test_a_summary_with_more_failures_than_shown_says_how_many_more() -> None:
    failures = [{"name": f"t/{n}", "headline": f"why {n}"} for n in range(5)]

    lines = failures_of_summary({"failed": 12, "failures": failures}, at_most=3)

    assert lines == ["t/0: why 0", "t/1: why 1", "t/2: why 2", "... and 9 more"]


def test_results_mark_a_crashed_and_a_hung_test_with_their_headlines() -> None:
    run = {
        "id": "r1",
        "outcome": "crashed",
        "kernel_version": "6.1",
        "duration_s": 1.0,
        "tests": [
            {
                "name": "crash/001",
                "status": "crashed",
                "message": "kernel panic: sysrq triggered crash\nmore",
            },
            {"name": "hang/001", "status": "timeout", "message": "test hang/001 hung: still running"},
        ],
    }
    lines = format_results(run).splitlines()
    assert "  CRSH crash/001" in lines and "         kernel panic: sysrq triggered crash" in lines
    assert "  HUNG hang/001" in lines and "         test hang/001 hung: still running" in lines
