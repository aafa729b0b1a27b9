"""What suites report with real parts: a KUnit run of a kernel without KUnit, live progress
of a `command` suite, whose start arrives on the virtio agent channel, and a failure's
headline from the guest to every view (Debian's kernel, TCG)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.suite.kunit import NO_KUNIT_RESULTS
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config, run_once
from tests.kunit_failures import CONSOLE, FAILED_TESTS, SIMPLE_HEADLINE, SIMPLE_TEST

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
CTL = [sys.executable, "-m", "nixvmd.ctl.main"]


def test_kunit_on_a_kernel_without_kunit_is_an_error_not_a_pass(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    text = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock")
    config.write_text(text.replace('kind = "command"', 'kind = "kunit"', 1))

    done = run_once(config, "--json")

    assert done.returncode == 2, done.stderr
    record = json.loads(done.stdout)
    assert record["suite"] == "kunit"
    assert record["outcome"] == "error"
    assert record["reason"] == NO_KUNIT_RESULTS
    assert record["tests"] == []
    saved = json.loads((state / "runs" / record["id"] / "run.json").read_text())
    assert (saved["outcome"], saved["reason"]) == ("error", NO_KUNIT_RESULTS)
    # The kernel did boot and the agent ran: only KUnit was missing.
    console = (state / "runs" / record["id"] / "console.log").read_text()
    assert f"Linux version {cloud_kernel.release}" in console


def test_status_names_the_running_command_and_counts_it_done_only_when_it_ends(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    command = "echo waiting-to-be-stopped; sleep 600"
    sock = short_tmp / "ctl.sock"
    config = direct_config(kernel_tree, cloud_kernel, tmp_path / "state", sock, command=command)
    daemon = daemon_factory(config)
    events = daemon.events(["run", "state", "test"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)

    # The start frame comes over the virtio port, not the console: progress must follow it.
    running = events.wait_for(lambda e: e["event"] == "test", 240)
    assert (running["test"], running["done"], running["total"]) == (command, 0, 1)
    current = daemon.status()["current"]
    assert current["run_id"] == started["run_id"]
    assert (current["test"], current["done"], current["total"]) == (command, 0, 1)
    assert current["phase"] == "testing"

    stop = subprocess.run([*CTL, "--socket", str(sock), "stop"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    ended = events.run_end(60)
    assert (ended["run_id"], ended["outcome"]) == (started["run_id"], "cancelled")
    # A command cut short is not counted as done, and no other test event claimed it was.
    assert all(e["done"] == 0 for e in events.seen if e["event"] == "test")
    assert daemon.status()["current"] is None
    events.close()


def example_suite_ktap() -> str:
    """The `example` suite's KTAP exactly as the real 6.1.192 kernel printed it, as one document."""
    lines = CONSOLE.read_text().splitlines()
    start = lines.index("    # Subtest: example") - 1  # its "KTAP version 1"
    end = lines.index("not ok 10 example")
    return "\n".join(["KTAP version 1", "1..1", *lines[start:end], "not ok 1 example"])


def test_a_failure_s_headline_reaches_the_run_event_status_results_and_junit(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # kselftest reads (K)TAP from what its command prints: KUnit's own report lines, through a real guest.
    command = f"cat <<'KTAP'\n{example_suite_ktap()}\nKTAP\nexit 1"
    state, sock = tmp_path / "state", short_tmp / "ctl.sock"
    config = direct_config(kernel_tree, cloud_kernel, state, sock, command=command)
    daemon = daemon_factory(config.replace('kind = "command"', 'kind = "kselftest"', 1))
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())

    ended = events.run_end()

    assert ended["outcome"] == "failed"
    assert ended["failures"][0] == {"name": SIMPLE_TEST, "headline": SIMPLE_HEADLINE}
    assert len(ended["failures"]) == FAILED_TESTS
    assert daemon.status()["last_run"]["failures"] == ended["failures"]
    status = subprocess.run(
        [*CTL, "--socket", str(sock), "status"], capture_output=True, text=True, timeout=60
    )
    assert f"  {SIMPLE_TEST}: {SIMPLE_HEADLINE}" in status.stdout.splitlines()
    results = subprocess.run(
        [*CTL, "--socket", str(sock), "results", ended["run_id"]], capture_output=True, text=True, timeout=60
    )
    assert results.returncode == 0, results.stderr
    shown = results.stdout.splitlines()
    assert shown[shown.index(f"  FAIL {SIMPLE_TEST}") + 1].strip() == SIMPLE_HEADLINE
    junit = ET.parse(state / "runs" / ended["run_id"] / "junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == "example_simple_test")
    failure = case.find("failure")
    assert case.get("classname") == "kselftest.example"
    assert failure is not None and failure.get("message") == SIMPLE_HEADLINE
    events.close()
