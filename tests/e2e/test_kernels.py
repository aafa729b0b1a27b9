"""The loop with other kernels: a KUnit kernel built from source, a serial-only guest, accel=auto."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    KERNEL_CACHE,
    DaemonProcess,
    KernelTree,
    SampleKernel,
    another_build,
    direct_config,
    run_once,
)

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]


def _record(state: Path, run_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return data


def _plain_config(tree: Path, state: Path, sock: Path, command: str, accel: str = "tcg") -> str:
    return f"""
[kernel]
tree = "{tree}"

[vm]
accel = "{accel}"
memory = "256M"
cpus = 1

[suite]
command = {json.dumps(command)}
timeout = "120s"

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"
"""


@pytest.mark.slow
def test_a_kunit_kernel_built_from_source_runs_through_the_loop_and_a_rebuild_reruns_it(
    daemon_factory: Start, tmp_path: Path, short_tmp: Path
) -> None:
    src = KERNEL_CACHE / "kunit-tiny" / "src"
    if not (src / "arch/x86/boot/bzImage").is_file():
        pytest.fail(f"no KUnit kernel tree in {src}: run scripts/build-kunit-kernel.sh first")
    state = tmp_path / "state"
    # The daemon watches the real build tree: `make bzImage` below is what triggers the run.
    daemon = daemon_factory(_plain_config(src, state, short_tmp / "ctl.sock", "true"))
    events = daemon.events(["run", "kernel"])
    first = events.run_end(300)
    assert first["outcome"] == "passed", daemon.text_log()
    console = (state / "runs" / first["run_id"] / "console.log").read_text()
    assert "KTAP version 1" in console
    assert re.search(r"# Totals: pass:\d+ fail:0", console)
    assert len(re.findall(r"^(?:\[[ \d.]+\])? *ok \d+ ", console, re.MULTILINE)) >= 20

    marker = f"nixvmd-rebuild-{secrets.token_hex(4)}"
    main_c = src / "init" / "main.c"
    original = main_c.read_text()
    anchor = "static int __ref kernel_init(void *unused)\n{\n"
    assert anchor in original
    try:
        main_c.write_text(original.replace(anchor, f'{anchor}\tpr_info("{marker}\\n");\n', 1))
        build = subprocess.run(
            ["make", "-C", str(src), f"-j{os.cpu_count()}", "bzImage"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert build.returncode == 0, build.stderr[-2000:]
        second = events.run_end(300)
        assert second["outcome"] == "passed"
        assert marker in (state / "runs" / second["run_id"] / "console.log").read_text()
    finally:
        main_c.write_text(original)
        subprocess.run(
            ["make", "-C", str(src), f"-j{os.cpu_count()}", "bzImage"],
            capture_output=True,
            timeout=900,
            check=False,
        )


def test_a_guest_without_virtio_console_reports_over_the_serial_console(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    # Without modules_dir, Debian's modular kernel has no virtio at all: the serial port is
    # the guest's only channel, and the agent's frames must come through it.
    state = tmp_path / "state"
    daemon = daemon_factory(
        _plain_config(kernel_tree.root, state, short_tmp / "ctl.sock", "echo serial-only-ok; exit 0")
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end()
    assert end["outcome"] == "passed", daemon.text_log()
    console = (state / "runs" / end["run_id"] / "console.log").read_text()
    assert re.search(r"@@NIXVMD@@ [0-9a-f]+ \d+ ready ", console)
    assert re.search(r"@@NIXVMD@@ [0-9a-f]+ \d+ exit 0 @@", console)
    assert "serial-only-ok" in console


def test_accel_auto_settles_on_what_boots_and_remembers_it(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    daemon = daemon_factory(
        direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", command="true", accel="auto")
    )
    events = daemon.events(["run"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    first = events.run_end()
    assert first["outcome"] == "passed", daemon.text_log()
    kernel_tree.write_in_place(another_build(image, 2))
    second = events.run_end()
    assert second["outcome"] == "passed", (second.get("reason"), daemon.text_log()[-3000:])
    accels = [_record(state, e["run_id"])["accel"] for e in (first, second)]
    assert accels[0] == accels[1], "the verdict of the first boot must hold for the next"
    verdicts = json.loads((state / "accel.json").read_text()) if (state / "accel.json").exists() else {}
    warnings = daemon.text_log().count("KVM is present but the guest made no progress")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert accels[0] == "tcg" and warnings == 0
    elif accels[0] == "kvm":
        assert list(verdicts.values()) == [True] and warnings == 0
    else:
        # This machine's case: /dev/kvm opens, guests hang under it. Probed once, warned once.
        assert list(verdicts.values()) == [False]
        assert warnings == 1


def _totals_by_suite(console: str) -> dict[str, tuple[int, int, int, int]]:
    """KUnit's own `# Totals` per top-level suite (the suite named by the `# Subtest:` before it)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    suite = ""
    for line in console.splitlines():
        text = re.sub(r"^\[[ \d.]+\] ", "", line)
        if m := re.match(r"^ {4}# Subtest: (.+)$", text):
            suite = m.group(1).strip()
        elif m := re.match(r"^# Totals: pass:(\d+) fail:(\d+) skip:(\d+) total:(\d+)", text):
            out[suite] = (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return out


def _kunit_config(tmp_path: Path, short_tmp: Path) -> tuple[Path, Path]:
    """A kunit config on a tree holding the KUnit kernel: (config file, state dir)."""
    image = KERNEL_CACHE / "kunit-tiny" / "bzImage"
    if not image.is_file():
        pytest.fail(f"no KUnit kernel at {image}: run scripts/build-kunit-kernel.sh first")
    tree = KernelTree(tmp_path / "linux")
    tree.image.parent.mkdir(parents=True)
    tree.write_in_place(image.read_bytes())
    state = tmp_path / "state"
    config = tmp_path / "nixvmd.toml"
    config.write_text(
        _plain_config(tree.root, state, short_tmp / "c.sock", "").replace('command = ""', 'kind = "kunit"')
    )
    return config, state


@pytest.mark.slow
def test_kunit_suite_turns_the_boot_ktap_into_tests_matching_the_kernels_totals(
    tmp_path: Path, short_tmp: Path
) -> None:
    config, state = _kunit_config(tmp_path, short_tmp)
    done = run_once(config, "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["suite"] == "kunit"
    tests = record["tests"]
    assert len(tests) >= 20
    console = (state / "runs" / record["id"] / "console.log").read_text()
    totals = _totals_by_suite(console)
    assert totals, "the kernel printed no # Totals lines"
    for suite, (passed, failed, skipped, total) in totals.items():
        mine = [t for t in tests if t["name"].startswith(suite + ".")]
        assert len(mine) == total, (suite, [t["name"] for t in mine])
        assert sum(t["status"] == "pass" for t in mine) == passed, suite
        assert sum(t["status"] == "fail" for t in mine) == failed, suite
        assert sum(t["status"] == "skip" for t in mine) == skipped, suite
    assert record["passed"] == sum(t["status"] == "pass" for t in tests)
    assert any(t["status"] == "skip" and "skipped" in t["message"] for t in tests)


@contextlib.contextmanager
def _cpu_hogs(count: int, seconds: float) -> Iterator[None]:
    """`count` busy processes that stop by themselves after `seconds`, and are killed on exit."""
    program = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", program]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


_KTAP_LINE = re.compile(r"^\s*(?:K?TAP version \d+|1\.\.\d+|# Subtest: |# Totals: |ok \d+|not ok \d+)")


def _ktap_lines(console: str) -> list[str]:
    """The console's KTAP lines (indentation kept, printk time stamps dropped)."""
    lines = (re.sub(r"^\[[ \d.]+\] ", "", line).rstrip() for line in console.splitlines())
    return [line for line in lines if _KTAP_LINE.match(line)]


@pytest.mark.slow
def test_kunit_names_under_host_load_are_the_kernels_own_run_after_run(
    tmp_path: Path, short_tmp: Path
) -> None:
    # Under load, the console once garbled KTAP ("kunit-resurce-test"): phantom tests,
    # phantom regressions. The names must be the kernel's own, whatever the host does.
    config, state = _kunit_config(tmp_path, short_tmp)
    idle = run_once(config, "--json")
    assert idle.returncode in (0, 1), idle.stderr
    first = json.loads(idle.stdout)
    reference = sorted(t["name"] for t in first["tests"])
    assert len(reference) >= 20
    reference_ktap = _ktap_lines((state / "runs" / first["id"] / "console.log").read_text())
    with _cpu_hogs(2, 900):
        for attempt in range(5):
            done = run_once(config, "--json")
            assert done.returncode in (0, 1), done.stderr
            record = json.loads(done.stdout)
            names = sorted(t["name"] for t in record["tests"])
            assert names == reference, (attempt, sorted(set(names) ^ set(reference)))
            console = (state / "runs" / record["id"] / "console.log").read_text()
            # console.log too: before, QEMU's logfile doubled a character in most loaded runs.
            assert _ktap_lines(console) == reference_ktap, attempt
            totals = _totals_by_suite(console)
            assert totals, "the kernel printed no # Totals lines"
            for suite, (_, _, _, total) in totals.items():
                assert sum(name.startswith(suite + ".") for name in names) == total, (attempt, suite)
            assert record["suspect_lines"] == []
