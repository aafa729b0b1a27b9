"""nixvmctl with no daemon: history, results, a run's console and the baseline from the state dir.

The state dir is a real one: made once by `nixvmd --once` booting Debian's cloud kernel with
a suite that fails (`false`), then copied for each test. nixvmctl runs as a subprocess with
the config, as a user would; a daemon started on the same state dir must answer the same.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixvmd.ctl.answers import BASELINE_USAGE
from nixvmd.results.known import BASELINE_LOCK
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config, run_once

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]


@dataclass(frozen=True)
class Made:
    """The state dir one real run left, and that run."""

    tree: KernelTree
    state: Path
    run_id: str
    release: str


@dataclass(frozen=True)
class Setup:
    """A copy of that state dir with a config pointing at it; no daemon runs."""

    tree: KernelTree
    workdir: Path
    config: Path
    config_text: str
    state: Path
    run_id: str
    release: str

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
        )

    @property
    def offline_note(self) -> str:
        return f"nixvmctl: nixvmd is not running; reading {self.state} directly\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, cloud_kernel: SampleKernel) -> Made:
    base = tmp_path_factory.mktemp("offline")
    tree = KernelTree(base / "linux")
    tree.image.parent.mkdir(parents=True)
    tree.write_in_place(cloud_kernel.image.read_bytes())
    config = base / "nixvmd.toml"
    config.write_text(
        direct_config(tree, cloud_kernel, base / "state", base / "unused.sock", command="false")
    )
    done = run_once(config, "--json")
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == "failed"
    # No kernel image any more: a daemon started on this state dir has nothing to run.
    tree.image.unlink()
    return Made(tree, base / "state", record["id"], record["kernel_version"])


@pytest.fixture
def setup(made: Made, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path) -> Setup:
    state = tmp_path / "state"
    shutil.copytree(made.state, state, symlinks=True, ignore=shutil.ignore_patterns("kernels", "initramfs"))
    text = direct_config(made.tree, cloud_kernel, state, short_tmp / "ctl.sock")
    config = tmp_path / "nixvmd.toml"
    config.write_text(text)
    return Setup(made.tree, tmp_path, config, text, state, made.run_id, made.release)


def _one_sentence(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


def test_history_results_and_a_runs_console_need_no_daemon(setup: Setup) -> None:
    history = setup.ctl("history")
    assert history.returncode == 0, history.stderr
    assert history.stderr == setup.offline_note
    header, line = history.stdout.splitlines()
    assert header.startswith("RUN ")
    assert line.split()[0] == setup.run_id and "failed" in line.split()

    results = setup.ctl("results")
    assert results.returncode == 0, results.stderr
    assert results.stderr == setup.offline_note
    assert results.stdout.startswith(f"run {setup.run_id}: failed on {setup.release}")
    assert "FAIL false" in results.stdout

    as_json = setup.ctl("results", setup.run_id, "--json")
    run_json = json.loads((setup.state / "runs" / setup.run_id / "run.json").read_text())
    assert json.loads(as_json.stdout) == run_json

    console = subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(setup.config), "logs", setup.run_id],
        capture_output=True,
        timeout=60,
    )
    assert console.returncode == 0, console.stderr
    assert console.stdout == (setup.state / "runs" / setup.run_id / "console.log").read_bytes()
    assert b"Linux version" in console.stdout

    _one_sentence(setup.ctl("logs"), "nixvmd is not running", "nixvmctl logs RUN")
    missing = setup.ctl("results", "20000101-000000-001")
    assert missing.returncode == 2 and "no run '20000101-000000-001'" in missing.stderr


def test_baseline_list_accept_remove_need_no_daemon(setup: Setup) -> None:
    bare = setup.ctl("baseline")
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, "", BASELINE_USAGE + "\n")

    assert setup.ctl("baseline", "list").stdout.startswith("no known failures")
    accepted = setup.ctl("baseline", "accept")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr == setup.offline_note
    assert accepted.stdout.strip().endswith(f"accepted from run {setup.run_id}: false")
    baseline = setup.state / "baseline" / "command"
    assert f"false  # accepted on {setup.release}" in baseline.read_text()

    listed = json.loads(setup.ctl("baseline", "list", "--json").stdout)
    assert listed["baseline"] == str(baseline)
    assert [(e["test"], e["conditions"], e["comment"]) for e in listed["entries"]] == [
        ("false", [], f"accepted on {setup.release}")
    ]

    removed = setup.ctl("baseline", "remove", "false")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"{baseline}: removed false"
    assert json.loads(setup.ctl("baseline", "list", "--json").stdout)["entries"] == []
    again = setup.ctl("baseline", "remove", "false")
    assert again.returncode == 2 and "no known failure named 'false'" in again.stderr


def test_a_daemon_on_the_same_state_dir_gives_the_same_answers(setup: Setup, daemon_factory: Start) -> None:
    questions = [
        ("history", "--json"),
        ("results", "--json"),
        ("results", setup.run_id, "--json"),
        ("logs", setup.run_id),
        ("baseline", "list", "--json"),
    ]
    offline = [setup.ctl(*q) for q in questions]
    assert all(done.returncode == 0 and done.stderr == setup.offline_note for done in offline), offline
    daemon_factory(setup.config_text)
    online = [setup.ctl(*q) for q in questions]
    assert all(done.returncode == 0 and done.stderr == "" for done in online), online
    for question, before, now in zip(questions, offline, online, strict=True):
        assert now.stdout == before.stdout, question


def _read_until(stream: object, text: bytes, timeout: float = 60) -> bytes:
    """What a child wrote to `stream` (a pipe) up to and including `text`."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    seen = b""
    while text not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {text!r} within {timeout}s; got {seen!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"the pipe closed before {text!r}; got {seen!r}"
        seen += chunk
    return seen


@pytest.fixture
def held_lock(setup: Setup) -> Iterator[int]:
    """The baseline lock of the state dir, held by this test as a writing daemon would hold it."""
    fd = os.open(setup.state / BASELINE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield fd
    finally:
        os.close(fd)


def test_an_offline_accept_waits_for_the_baseline_lock_then_writes(setup: Setup, held_lock: int) -> None:
    proc = setup.popen("baseline", "accept")
    try:
        said = _read_until(proc.stderr, f"being changed by process {os.getpid()}".encode())
        assert said.startswith(setup.offline_note.encode())
        assert not (setup.state / "baseline" / "command").exists(), "written while the lock was held"
        fcntl.flock(held_lock, fcntl.LOCK_UN)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert out.decode().strip().endswith(f"accepted from run {setup.run_id}: false")
    assert "false  # accepted on" in (setup.state / "baseline" / "command").read_text()


def test_an_offline_accept_gives_up_clearly_when_the_lock_stays_taken(setup: Setup, held_lock: int) -> None:
    done = setup.ctl("--timeout", "1", "baseline", "accept")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"still being changed by process {os.getpid()} (nixvmd or nixvmctl) after 1s" in done.stderr
    assert not (setup.state / "baseline" / "command").exists()


def test_the_daemon_takes_the_same_baseline_lock(setup: Setup, daemon_factory: Start, held_lock: int) -> None:
    daemon = daemon_factory(setup.config_text)
    logs = daemon.events(["log"])
    proc = setup.popen("baseline", "accept")
    try:
        logs.wait_for(lambda e: f"being changed by process {os.getpid()}" in e["line"], 60)
        assert not (setup.state / "baseline" / "command").exists(), "written while the lock was held"
        fcntl.flock(held_lock, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        logs.close()
    assert (proc.returncode, err) == (0, b"")
    assert out.decode().strip().endswith(f"accepted from run {setup.run_id}: false")
    assert "false  # accepted on" in (setup.state / "baseline" / "command").read_text()
