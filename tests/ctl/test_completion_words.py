"""Dynamic completion: run ids, test names and baseline entries, read from the state dir.

The bash function runs in a real bash with COMP_WORDS set, and calls a real `nixvmctl`
(this checkout's, through a shim on PATH) for `__complete`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixvmd.config.load import load_config
from nixvmd.ctl import completion
from nixvmd.ctl.main import build_parser
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.results.store import RunStore

WHOLE_RUN_TESTS = ["boot.smoke", "disk.read", "disk.write"]
BASELINE = '# known failures\ndisk.write  [>= 6.1]  # flaky\n"selftests: net: reuseport"\n'


def _record(store: RunStore, tests: list[str], narrowed_to: list[str], suite: str = "command") -> str:
    run_id, _ = store.new_run_dir()
    record = RunRecord(run_id, suite, "/k", "6.1.0", "direct", time.time(), narrowed_to=narrowed_to)
    record.outcome = Outcome.PASSED
    record.tests = [TestResult(name, TestStatus.PASS) for name in tests]
    store.save(record)
    return run_id


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[str]]:
    """A config in tmp_path/here, its state dir with two runs (the second narrowed), a baseline."""
    here = tmp_path / "here"
    here.mkdir()
    state = tmp_path / "state"
    (here / "nixvmd.toml").write_text(f'[daemon]\nstate_dir = "{state}"\nsocket = "{tmp_path}/s.sock"\n')
    store = RunStore(state)
    ids = [_record(store, WHOLE_RUN_TESTS, []), _record(store, ["disk.read"], ["disk.read"])]
    (state / "baseline").mkdir()
    (state / "baseline" / "command").write_text(BASELINE)
    return here, ids


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """A directory with a `nixvmctl` that runs this checkout's code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nixvmctl"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m nixvmd.ctl.main "$@"\n')
    script.chmod(0o755)
    return bin_dir


def _complete(cwd: Path, shim: Path, *words: str) -> list[str]:
    """COMPREPLY after `words` (the last one is being typed), one entry a line."""
    script = completion.bash_script(build_parser())
    quoted = " ".join(f"'{w}'" for w in words)
    call = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _nixvmctl"
    program = f'{script}\n{call}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    # The user's own config and state dirs are not this test's: an empty home of its own.
    home = shim.parent / "home"
    env = dict(
        os.environ,
        PATH=f"{shim}:{os.environ['PATH']}",
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
    )
    out = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, cwd=cwd, env=env, timeout=60
    )
    return [line for line in out.stdout.splitlines() if line]


def test_run_ids_complete_after_results_logs_and_baseline_accept(
    setup: tuple[Path, list[str]], shim: Path
) -> None:
    here, ids = setup
    assert _complete(here, shim, "nixvmctl", "results", "2") == ids[::-1]
    assert set(ids) <= set(_complete(here, shim, "nixvmctl", "results", ""))
    assert _complete(here, shim, "nixvmctl", "logs", "2") == ids[::-1]
    assert _complete(here, shim, "nixvmctl", "baseline", "accept", ids[0]) == [ids[0]]
    # One run id is all `results` takes.
    assert _complete(here, shim, "nixvmctl", "results", ids[0], "") == []


def test_test_names_complete_after_run_tests(setup: tuple[Path, list[str]], shim: Path) -> None:
    here, _ = setup
    # From the latest whole run: the narrowed one after it ran only disk.read.
    assert _complete(here, shim, "nixvmctl", "run", "--tests", "") == WHOLE_RUN_TESTS
    assert _complete(here, shim, "nixvmctl", "run", "--tests", "boot.smoke", "disk.") == [
        "disk.read",
        "disk.write",
    ]
    # An option ends the list.
    assert "--json" in _complete(here, shim, "nixvmctl", "run", "--tests", "disk.read", "--json", "--")


def test_baseline_entries_complete_after_baseline_remove(setup: tuple[Path, list[str]], shim: Path) -> None:
    here, _ = setup
    offered = _complete(here, shim, "nixvmctl", "baseline", "remove", "")
    # A name with spaces comes quoted for the shell.
    assert {"disk.write", "selftests:\\ net:\\ reuseport"} <= set(offered)
    assert _complete(here, shim, "nixvmctl", "baseline", "remove", "disk.write", "d") == ["disk.write"]
    assert _complete(here, shim, "nixvmctl", "baseline", "") == ["-h", "--help", "list", "accept", "remove"]


def test_config_before_the_command_chooses_the_state_dir(
    setup: tuple[Path, list[str]], shim: Path, tmp_path: Path
) -> None:
    here, ids = setup
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _complete(elsewhere, shim, "nixvmctl", "results", "2") == []
    config = str(here / "nixvmd.toml")
    assert _complete(elsewhere, shim, "nixvmctl", "--config", config, "results", "2") == ids[::-1]


def test_the_helper_command_is_hidden_and_silent(
    setup: tuple[Path, list[str]], shim: Path, tmp_path: Path
) -> None:
    here, _ = setup
    assert completion.COMPLETE not in _complete(here, shim, "nixvmctl", "")
    assert completion.COMPLETE not in build_parser().format_help()
    broken = tmp_path / "broken.toml"
    broken.write_text("[daemon\n")
    done = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(broken), completion.COMPLETE, "runs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("kind", "recorded", "offered"),
    [
        (
            "xfstests",
            ["xfs_4k:generic/001", "ext4:generic/001", "xfs_4k:xfs/013"],
            ["generic/001", "xfs/013"],
        ),
        (
            "kunit",
            ["list-kunit-test.list_test_init", "list-kunit-test.list_test_add", "mm.a"],
            [
                "list-kunit-test.*",
                "mm.*",
                "list-kunit-test.list_test_init",
                "list-kunit-test.list_test_add",
                "mm.a",
            ],
        ),
    ],
)
def test_test_names_as_run_tests_takes_them(
    tmp_path: Path, kind: str, recorded: list[str], offered: list[str]
) -> None:
    config_file = tmp_path / "nixvmd.toml"
    config_file.write_text(f'[suite]\nkind = "{kind}"\n[daemon]\nstate_dir = "{tmp_path}/state"\n')
    config = load_config(config_file)
    _record(RunStore(config.daemon.state_dir), recorded, [], suite=kind)
    assert completion.completion_words("tests", config) == offered


def test_zsh_script_asks_for_the_same_words() -> None:
    script = completion.zsh_script(build_parser())
    assert "\n_nixvmctl_words() {" in script
    assert "'1:runs:_nixvmctl_words runs'" in script
    assert "'*:baseline:_nixvmctl_words baseline'" in script
    assert ":*-*:tests:_nixvmctl_words tests'" in script


# Stands in for the compadd builtin (a function wins over a builtin): shows what it was given.
ZSH_COMPADD = """
compadd() {
    local -a opts
    while (( $# )); do
        if [[ $1 == -a ]]; then print -rl -- words: "${(@P)2}"; shift 2; else opts+=("$1"); shift; fi
    done
    print -rl -- options: "${opts[@]}"
}
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (apt-get install zsh)")
def test_zsh_helper_hands_the_words_and_compadds_options_on(
    setup: tuple[Path, list[str]], shim: Path
) -> None:
    """_arguments calls an action with compadd's options before its own words: they must reach
    compadd, and KIND (the last word) must reach `nixvmctl __complete`."""
    here, ids = setup
    script = completion.zsh_script(build_parser())
    check = subprocess.run(["zsh", "-n", "-c", script], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    functions = script.removesuffix('_nixvmctl "$@"\n')
    program = f'{functions}{ZSH_COMPADD}_nixvmctl_words -J runs -X "run id" runs\n'
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    done = subprocess.run(
        ["zsh", "-f", "-c", program], capture_output=True, text=True, cwd=here, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["words:", *ids[::-1], "options:", "-J", "runs", "-X", "run id"]
