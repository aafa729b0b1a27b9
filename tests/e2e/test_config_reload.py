"""A bad config is reported with file, line and key path; a running daemon keeps its last good one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nixvmd.errors import ControlError
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

Start = Callable[[str], DaemonProcess]

EVENT_TIMEOUT = 15.0


@dataclass(frozen=True)
class BadEdit:
    """A way to break a good config, and what the daemon must say about it."""

    name: str
    old: str
    new: str
    culprit: str  # the line of `new` the error must point at
    message: str  # what follows "<file>:<line>: " in the error

    def apply(self, good: str) -> tuple[str, int]:
        """The broken text and the number of the line that breaks it."""
        assert good.count(self.old) == 1, self.old
        text = good.replace(self.old, self.new)
        return text, self.line_in(text)

    def line_in(self, text: str) -> int:
        """The number of the culprit's line in `text`."""
        assert text.count(self.culprit) == 1, self.culprit
        return text[: text.index(self.culprit)].count("\n") + 1


BAD_EDITS = [
    BadEdit("syntax-error", "cpus = 2\n", "cpus = = 2\n", "cpus = = 2", "not valid TOML"),
    BadEdit(
        "wrong-type",
        'memory = "512M"',
        'memory = "lots"',
        'memory = "lots"',
        "vm.memory: expected a size like '2G', got 'lots'",
    ),
    BadEdit(
        "unknown-key",
        "[suite]\n",
        '[suite]\nkommand = "x"\n',
        'kommand = "x"',
        "suite.kommand: unknown key",
    ),
]


def _write_in_place(path: Path, text: str) -> None:
    """What most editors and `echo >` do: open, truncate, write, close."""
    with path.open("w") as f:
        f.write(text)


def _replace_atomically(path: Path, text: str) -> None:
    """What vim (with backupcopy=no), emacs and careful tools do: write aside, rename over."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.rename(tmp, path)


WRITERS = {"in-place": _write_in_place, "atomic-rename": _replace_atomically}


@dataclass
class Setup:
    daemon: DaemonProcess
    good: str
    state: Path
    kernel_image: Path


@pytest.fixture
def setup(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> Setup:
    """A daemon whose kernel does not exist yet, so nothing boots."""
    state = tmp_path / "state"
    good = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock")
    return Setup(daemon_factory(good), good, state, kernel_tree.image)


def _is_config(event: dict[str, Any]) -> bool:
    return bool(event["event"] == "config")


def _assert_old_config_in_force(s: Setup, kernel_image: Path) -> None:
    daemon = s.daemon
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.text_log()
    status = daemon.status()
    assert status["pid"] == daemon.proc.pid
    assert status["config"]["path"] == str(daemon.config)
    assert status["image"]["backend"] == "direct"
    assert status["kernel_error"] is not None
    assert str(kernel_image) in status["kernel_error"]


@pytest.mark.parametrize("write", list(WRITERS), ids=list(WRITERS))
@pytest.mark.parametrize("edit", BAD_EDITS, ids=[e.name for e in BAD_EDITS])
def test_a_bad_reload_is_reported_and_the_last_good_config_stays(
    setup: Setup, edit: BadEdit, write: str
) -> None:
    daemon, writer = setup.daemon, WRITERS[write]
    _assert_old_config_in_force(setup, setup.kernel_image)
    bad, line = edit.apply(setup.good)
    expected = f"{daemon.config}:{line}: {edit.message}"
    events = daemon.events(["config"])
    try:
        writer(daemon.config, bad)
        event = events.wait_for(_is_config, EVENT_TIMEOUT)
        assert event["ok"] is False, event
        assert expected in event["error"], event["error"]
        assert daemon.status()["config"]["error"] == event["error"]
        assert "Traceback" not in daemon.text_log()
        _assert_old_config_in_force(setup, setup.kernel_image)

        # A good file again: accepted, the error cleared, and it really is the new config in force.
        other_image = setup.kernel_image.with_name("next-bzImage")
        fixed = setup.good.replace("[kernel]\n", f'[kernel]\nimage = "{other_image}"\n')
        writer(daemon.config, fixed)
        event = events.wait_for(_is_config, EVENT_TIMEOUT)
        assert event["ok"] is True, event
        status = daemon.status()
        assert status["config"]["error"] is None
        assert str(other_image) in status["kernel_error"]
        assert str(setup.kernel_image) not in status["kernel_error"]
    finally:
        events.close()
    assert daemon.socket.exists()
    assert "Traceback" not in daemon.text_log()


def test_every_bad_reload_in_a_row_is_reported_and_the_daemon_serves_throughout(setup: Setup) -> None:
    daemon = setup.daemon
    events = daemon.events(["config"])
    try:
        for index, edit in enumerate(BAD_EDITS):
            writer = list(WRITERS.values())[index % len(WRITERS)]
            bad, line = edit.apply(setup.good)
            writer(daemon.config, bad)
            event = events.wait_for(_is_config, EVENT_TIMEOUT)
            assert event["ok"] is False, (edit.name, event)
            assert f"{daemon.config}:{line}: {edit.message}" in event["error"]
            assert daemon.status()["config"]["error"] == event["error"]
            _assert_old_config_in_force(setup, setup.kernel_image)
        _replace_atomically(daemon.config, setup.good)
        assert events.wait_for(_is_config, EVENT_TIMEOUT)["ok"] is True
        assert daemon.status()["config"]["error"] is None
    finally:
        events.close()
    assert daemon.call("reload") == {"error": None}


def test_an_explicit_reload_of_a_bad_file_is_refused_with_the_error(setup: Setup) -> None:
    daemon = setup.daemon
    edit = BAD_EDITS[1]
    bad, line = edit.apply(setup.good)
    events = daemon.events(["config"])
    try:
        _write_in_place(daemon.config, bad)
        events.wait_for(_is_config, EVENT_TIMEOUT)
    finally:
        events.close()
    with pytest.raises(ControlError) as refused:
        daemon.call("reload")
    assert "config refused, the last good one stays in force" in str(refused.value)
    assert f"{daemon.config}:{line}: {edit.message}" in str(refused.value)
    _assert_old_config_in_force(setup, setup.kernel_image)

    # nixvmctl says so and fails; once the file is good again, reload succeeds and exits 0.
    ctl = [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(daemon.socket), "reload"]
    done = _run(ctl, daemon.workdir)
    assert done.returncode != 0, done
    assert done.stdout == ""
    assert done.stderr.startswith("nixvmctl: config refused")
    assert f"{daemon.config}:{line}: {edit.message}" in done.stderr
    _write_in_place(daemon.config, setup.good)
    done = _run(ctl, daemon.workdir)
    assert done.returncode == 0, done.stderr
    assert daemon.status()["config"]["error"] is None


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("edit", BAD_EDITS, ids=[e.name for e in BAD_EDITS])
def test_nixvmd_with_a_bad_config_exits_2_with_the_message(
    edit: BadEdit,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    sock = short_tmp / "ctl.sock"
    bad_text, line = edit.apply(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", sock))
    bad = tmp_path / "bad.toml"
    bad.write_text(bad_text)
    result = _run([sys.executable, "-m", "nixvmd.daemon.main", "--config", str(bad)], tmp_path)
    assert result.returncode == 2, result
    assert f"{bad}:{line}: {edit.message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not sock.exists()


def test_nixvmctl_config_check_says_what_is_wrong(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    good_text = direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock")
    good = tmp_path / "good.toml"
    good.write_text(good_text)
    ctl = [sys.executable, "-m", "nixvmd.ctl.main", "config", "check"]
    ok = _run([*ctl, str(good)], tmp_path)
    assert ok.returncode == 0, ok
    assert str(good) in ok.stdout
    assert ok.stderr == ""

    bad = tmp_path / "bad.toml"
    for edit in BAD_EDITS:
        text, line = edit.apply(good_text)
        bad.write_text(text)
        result = _run([*ctl, str(bad)], tmp_path)
        assert result.returncode == 2, (edit.name, result)
        assert f"{bad}:{line}: {edit.message}" in result.stderr, (edit.name, result.stderr)
        assert "Traceback" not in result.stderr

    # Every problem in a file is reported at once, each on its own line.
    both = BAD_EDITS[1:]
    text = good_text
    for edit in both:
        text, _ = edit.apply(text)
    bad.write_text(text)
    result = _run([*ctl, str(bad)], tmp_path)
    assert result.returncode == 2, result
    for edit in both:
        assert f"{bad}:{edit.line_in(text)}: {edit.message}" in result.stderr, (edit.name, result.stderr)
