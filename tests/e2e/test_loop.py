"""The loop end to end with real parts: daemon process, inotify, QEMU (TCG), Debian's kernel."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    KEPT_DISK,
    DaemonProcess,
    KernelTree,
    SampleKernel,
    another_build,
    direct_config,
    kept_disk,
    run_once,
)

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]


def _run_json(state: Path, run_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return data


def test_new_kernel_in_place_and_by_rename_each_start_a_passing_run(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    assert daemon.status()["kernel"] is None
    assert daemon.status()["last_run"] is None
    events = daemon.events()
    image = cloud_kernel.image.read_bytes()

    kernel_tree.write_in_place(image)
    first = events.run_end()
    assert first["outcome"] == "passed", daemon.text_log()
    record = _run_json(state, first["run_id"])
    assert record["outcome"] == "passed"
    console = (state / "runs" / first["run_id"] / "console.log").read_text()
    assert f"Linux version {cloud_kernel.release}" in console
    assert "smoke: ok" in console
    assert (state / "runs" / first["run_id"] / "junit.xml").is_file()
    status = daemon.status()
    assert status["kernel"]["version"].startswith(cloud_kernel.release)
    assert status["kernel"]["path"] == str(kernel_tree.image)
    assert status["last_run"]["id"] == first["run_id"]
    assert status["last_run"]["outcome"] == "passed"
    assert status["current"] is None

    kernel_tree.write_in_place(another_build(image, 2))  # a rebuild: other bytes
    second = events.run_end()
    assert second["outcome"] == "passed"
    assert second["run_id"] != first["run_id"]

    kernel_tree.replace_atomically(another_build(image, 3))
    third = events.run_end()
    assert third["outcome"] == "passed"
    assert len({first["run_id"], second["run_id"], third["run_id"]}) == 3
    history = daemon.call("history")
    assert [r["id"] for r in history] == [first["run_id"], second["run_id"], third["run_id"]]
    events.close()


def test_bad_kernel_images_are_refused_and_the_good_one_kept(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    events = daemon.events()
    good = events.run_end()
    assert good["outcome"] == "passed"

    for bad, words in ((image[: len(image) // 2], "truncated"), (os.urandom(300_000), "not an x86 bzImage")):
        kernel_tree.write_in_place(bad)
        refused = events.wait_for(lambda e: e["event"] == "kernel", 30)
        assert refused["ok"] is False
        assert words in refused["error"]
        status = daemon.status()
        assert words in status["kernel_error"]
        assert status["kernel"]["version"].startswith(cloud_kernel.release)
        assert status["current"] is None
        assert status["last_run"]["id"] == good["run_id"]
        logs = "\n".join(daemon.call("logs")["lines"])
        assert "kernel refused" in logs and words in logs
    assert [r["id"] for r in daemon.call("history")] == [good["run_id"]]
    events.close()


def test_a_new_kernel_during_a_run_cancels_it_and_runs_the_newest(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    # The first run marks the kept disk and hangs; the next one finds the mark and passes.
    command = (
        f"k={KEPT_DISK}; if head -c 4 $k | grep -q MARK; then exit 0; fi; "
        "echo MARK | dd of=$k conv=fsync 2>/dev/null; echo disk-marked; sleep 600"
    )
    daemon = daemon_factory(
        direct_config(
            kernel_tree,
            cloud_kernel,
            state,
            short_tmp / "ctl.sock",
            command=command,
            qemu_options=kept_disk(tmp_path),
        )
    )
    events = daemon.events(["run", "state", "console"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    events.wait_for(lambda e: e["event"] == "console" and e["line"].strip() == "disk-marked", 240)
    kernel_tree.replace_atomically(another_build(image, 2))
    cancelled = events.run_end(60)
    assert cancelled["run_id"] == started["run_id"]
    assert cancelled["outcome"] == "cancelled"
    second_start = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    # The first run's QEMU was gone before the second one started: its record says so.
    assert _run_json(state, started["run_id"])["outcome"] == "cancelled"
    assert _run_json(state, started["run_id"])["reason"] == "cancelled by a new kernel"
    newest = events.run_end()
    assert newest["run_id"] == second_start["run_id"]
    assert newest["outcome"] == "passed"
    order = [(e["run_id"], e["phase"]) for e in events.seen if e["event"] == "run"]
    assert order.index((started["run_id"], "end")) < order.index((second_start["run_id"], "start"))
    events.close()


@pytest.mark.parametrize(
    ("command", "timeout", "outcome", "in_console"),
    [
        ("echo failing on purpose; exit 3", "120s", "failed", "failing on purpose"),
        ("sleep 600", "3s", "timeout", "Run /init as init process"),
        ("echo c > /proc/sysrq-trigger", "120s", "crashed", "Kernel panic - not syncing"),
    ],
    ids=["exit-3", "suite-timeout", "panic"],
)
def test_once_reports_the_kernels_failures(
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    command: str,
    timeout: str,
    outcome: str,
    in_console: str,
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    config.write_text(
        direct_config(
            kernel_tree, cloud_kernel, state, short_tmp / "c.sock", command=command, timeout=timeout
        )
    )
    done = run_once(config, "--json")
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == outcome
    run_dir = state / "runs" / record["id"]
    assert in_console in (run_dir / "console.log").read_text()
    assert _run_json(state, record["id"])["outcome"] == outcome
    if outcome == "failed":
        assert record["exit_status"] == 3
        assert "failing on purpose" in record["tests"][0]["message"]


def test_once_passes_and_exits_0(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    config.write_text(direct_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock"))
    done = run_once(config, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "passed on " + cloud_kernel.release in done.stdout


def test_once_without_a_kernel_exits_2_with_a_clear_message(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    config = tmp_path / "nixvmd.toml"
    config.write_text(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "c.sock"))
    done = run_once(config, timeout=60)
    assert done.returncode == 2
    assert "no kernel image there yet" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_splat_on_the_console_of_a_passing_run_is_reported(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    config = tmp_path / "nixvmd.toml"
    # What the kernel prints for a WARN_ON, logged through /dev/kmsg so it reaches the console.
    warn = "WARNING: CPU: 0 PID: 1 at fs/xfs/xfs_inode.c:42 xfs_example+0x1/0x2"
    config.write_text(
        direct_config(
            kernel_tree,
            cloud_kernel,
            state,
            short_tmp / "c.sock",
            command=f"echo '{warn}' > /dev/kmsg; echo done",
        )
    )
    done = run_once(config, "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == "passed"
    assert [s["kind"] for s in record["splats"]] == ["warning"]
    assert "xfs_example" in record["splats"][0]["line"]
    assert "splat" in record["reason"]
    assert _run_json(state, record["id"])["splats"] == record["splats"]


def test_a_kernel_module_that_does_not_load_ends_the_run_as_an_error(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    (kernel_tree.root / "drivers").mkdir()
    (kernel_tree.root / "drivers" / "broken.ko").write_bytes(b"\x7fELF not really a module")
    config = tmp_path / "nixvmd.toml"
    text = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock")
    config.write_text(text.replace("[kernel]\n", '[kernel]\nmodules = ["drivers/broken.ko"]\n', 1))
    done = run_once(config, "--json")
    assert done.returncode == 2, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == "error"
    assert "broken.ko" in record["reason"]
    assert "did not load" in record["reason"]
