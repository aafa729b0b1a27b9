"""Logging setup: plain lines on a terminal, `<N>`-prefixed lines when stderr is the journal."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nixvmd.report.journal import (
    prefix_priority,
    run_fields,
    stderr_is_journal,
    syslog_priority,
)

CHILD = """
import logging, sys
from nixvmd.report.journal import run_fields, setup_logging
handler = setup_logging(verbose=sys.argv[1] == "verbose")
log = logging.getLogger("nixvmd.demo")
log.debug("looking closer")
log.info("run finished", extra=run_fields("r1", "6.8.0", "failed"))
log.warning("two\\nlines")
log.error("broken")
print(type(handler).__module__ + "." + type(handler).__name__)
"""


def run_child(stderr_file: Path, *, journal_stream: str | None, verbose: bool = False) -> str:
    """Run CHILD with stderr on `stderr_file`; return the handler class it installed."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    with stderr_file.open("w") as stderr:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, "verbose" if verbose else "quiet"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
            timeout=60,
            check=True,
        )
    return result.stdout.strip()


def stream_id(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_dev}:{stat.st_ino}"


def test_priority_prefix_on_every_line() -> None:
    assert prefix_priority("boom", logging.ERROR) == "<3>boom"
    assert prefix_priority("a\nb", logging.WARNING) == "<4>a\n<4>b"
    assert prefix_priority("", logging.INFO) == "<6>"


def test_syslog_priorities() -> None:
    assert [
        syslog_priority(level)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 50, 60)
    ] == [7, 6, 4, 3, 2, 2]


def test_journal_stream_must_be_this_very_stderr(tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.touch()
    elsewhere.touch()
    with here.open() as stream:
        assert stderr_is_journal({"JOURNAL_STREAM": stream_id(here)}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": stream_id(elsewhere)}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal({}, stream)


def test_under_the_journal_lines_carry_priorities_and_no_time(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    stderr.touch()
    handler = run_child(stderr, journal_stream=stream_id(stderr))
    if handler.startswith("systemd.journal."):
        pytest.skip("systemd-python is installed, so entries go to journald, not stderr")
    assert stderr.read_text() == (
        "<6>nixvmd.demo: run finished\n<4>nixvmd.demo: two\n<4>lines\n<3>nixvmd.demo: broken\n"
    )


def test_on_a_terminal_lines_are_plain_and_timestamped(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    # JOURNAL_STREAM inherited from a parent whose stderr was the journal does not count.
    other = tmp_path / "other"
    other.touch()
    run_child(stderr, journal_stream=stream_id(other), verbose=True)
    lines = stderr.read_text().splitlines()
    timestamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(timestamp + r" DEBUG nixvmd\.demo: looking closer", lines[0])
    assert re.fullmatch(timestamp + r" INFO nixvmd\.demo: run finished", lines[1])
    assert not any(line.startswith("<") for line in lines)


def test_run_fields_are_journal_field_names() -> None:
    assert run_fields("r1", "6.8.0", "failed") == {
        "RUN_ID": "r1",
        "KERNEL_VERSION": "6.8.0",
        "OUTCOME": "failed",
    }
    assert run_fields("r2") == {"RUN_ID": "r2"}


# Runs inside `unshare -m`: tmpfs over journald's directories, so a private journald can run
# without touching the host's journal, and the child logs to it exactly as under a service.
HARNESS = r"""
import json, os, socket, subprocess, sys, tempfile

child_python, child_code, work = sys.argv[1], sys.argv[2], sys.argv[3]
for target in ("/run/systemd", "/run/log", "/etc/systemd", "/var/log/journal"):
    if os.path.isdir(target):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)
os.mkdir("/run/systemd/journal")
with open("/etc/systemd/journald.conf", "w") as conf:
    conf.write("[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\n")

ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ready.bind(os.path.join(work, "notify"))
ready.settimeout(20)
env = dict(os.environ, NOTIFY_SOCKET=os.path.join(work, "notify"), SYSTEMD_LOG_TARGET="console")
journald = subprocess.Popen(["/lib/systemd/systemd-journald"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while b"READY=1" not in ready.recv(4096).split(b"\n"):
        pass
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect("/run/systemd/journal/stdout")
    # identifier, unit, priority, level prefix, forward to syslog, kmsg, console
    stream.sendall(b"nixvmd\n\n6\n1\n0\n0\n0\n")
    st = os.fstat(stream.fileno())
    child_env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    subprocess.run([child_python, "-c", child_code, "quiet"], stderr=stream.fileno(),
                   stdout=subprocess.DEVNULL, env=child_env, check=True, timeout=30)
    stream.close()
    subprocess.run(["journalctl", "--sync"], check=True, timeout=30)
finally:
    journald.terminate()
    journald.wait()
out = subprocess.run(["journalctl", "-D", "/run/log/journal", "-o", "json", "--no-pager",
                      "SYSLOG_IDENTIFIER=nixvmd"], capture_output=True, text=True, check=True)
sys.stdout.write(out.stdout)
"""


def journal_entries(python: str, tmp_path: Path) -> list[dict[str, str]]:
    """Run CHILD with `python` under a private journald; the entries journald recorded."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    harness = [sys.executable, "-c", HARNESS, python, CHILD, str(tmp_path)]
    process = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", *harness],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        # journald lives in the harness's process group: nothing outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def python_with_systemd_journal() -> str | None:
    for python in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if (
            python
            and subprocess.run(
                [python, "-c", "import sys, systemd.journal; assert sys.version_info >= (3, 11)"],
                capture_output=True,
            ).returncode
            == 0
        ):
            return python
    return None


needs_private_journald = pytest.mark.skipif(
    os.geteuid() != 0
    or shutil.which("unshare") is None
    or not os.path.exists("/lib/systemd/systemd-journald"),
    reason="a private journald needs root, unshare(1) and systemd-journald",
)


@needs_private_journald
def test_journald_records_the_priority_of_each_line(tmp_path: Path) -> None:
    if python_with_systemd_journal() == sys.executable:
        pytest.skip("systemd-python is installed here, so this interpreter logs natively")
    entries = journal_entries(sys.executable, tmp_path)
    assert [(e["MESSAGE"], e["PRIORITY"]) for e in entries] == [
        ("nixvmd.demo: run finished", "6"),
        ("nixvmd.demo: two", "4"),
        ("lines", "4"),
        ("nixvmd.demo: broken", "3"),
    ]


@needs_private_journald
def test_journald_gets_structured_fields_from_systemd_python(tmp_path: Path) -> None:
    python = python_with_systemd_journal()
    if python is None:
        pytest.skip("no Python ≥ 3.11 here has systemd-python (apt-get install python3-systemd)")
    entries = {e["MESSAGE"]: e for e in journal_entries(python, tmp_path)}
    finished = entries["nixvmd.demo: run finished"]
    assert finished["PRIORITY"] == "6"
    assert (finished["RUN_ID"], finished["KERNEL_VERSION"], finished["OUTCOME"]) == (
        "r1",
        "6.8.0",
        "failed",
    )
    assert entries["nixvmd.demo: two\nlines"]["PRIORITY"] == "4"
    assert "RUN_ID" not in entries["nixvmd.demo: broken"]
