"""A kernel tree that is not there yet, wiped and rebuilt, or hidden by a mount: the daemon follows it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel, direct_config
from tests.watch.watching import tmpfs_over

Start = Callable[[str], DaemonProcess]
KERNEL_EVENT_TIMEOUT = 30


def _kernel_event(events: EventStream, ok: bool) -> dict[str, Any]:
    return events.wait_for(lambda e: e["event"] == "kernel" and e["ok"] is ok, KERNEL_EVENT_TIMEOUT)


def _runs_on(daemon: DaemonProcess, events: EventStream, image: bytes) -> dict[str, Any]:
    """The run the kernel `image` starts: checked, booted from its own snapshot, passed."""
    _kernel_event(events, ok=True)
    start = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 30)
    digest = hashlib.sha256(image).hexdigest()
    assert daemon.status()["kernel"]["digest"] == digest
    end = events.run_end()
    assert end["run_id"] == start["run_id"]
    assert end["outcome"] == "passed", daemon.text_log()
    return end


@pytest.mark.vm
def test_a_tree_made_after_the_daemon_started_and_one_wiped_and_rebuilt_both_run_their_kernel(
    daemon_factory: Start, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    state = tmp_path / "state"
    tree = KernelTree(tmp_path / "linux")  # not there yet: a clone and a first build to come
    daemon = daemon_factory(direct_config(tree, cloud_kernel, state, short_tmp / "ctl.sock"))
    status = daemon.status()
    assert status["kernel"] is None
    assert f"the kernel tree {tree.root} does not exist (yet)" in status["kernel_error"]
    assert any("watches for it" in line for line in daemon.call("logs")["lines"])
    events = daemon.events(["run", "kernel"])
    first_image = cloud_kernel.image.read_bytes()

    # The first build into a tree that did not exist when the daemon started.
    tree.image.parent.mkdir(parents=True)
    tree.write_in_place(first_image)
    first = _runs_on(daemon, events, first_image)

    # `git clean -xdf` / `make mrproper`: the build output goes, the daemon says so.
    shutil.rmtree(tree.root / "arch")
    gone = _kernel_event(events, ok=False)
    assert "is gone" in gone["error"]
    status = daemon.status()
    assert "is gone" in status["kernel_error"]
    assert status["kernel"]["version"].startswith(cloud_kernel.release)  # the last good one stays

    # The rebuild: new directories, a new image (trailing bytes make it a different file).
    second_image = first_image + b"\0" * 4096
    tree.image.parent.mkdir(parents=True)
    tree.write_in_place(second_image)
    second = _runs_on(daemon, events, second_image)
    assert second["run_id"] != first["run_id"]
    assert daemon.status()["kernel_error"] is None
    assert [r["id"] for r in daemon.call("history")] == [first["run_id"], second["run_id"]]
    events.close()


def test_reload_looks_every_watch_up_again_and_rechecks_the_kernel(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    daemon = daemon_factory(
        direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock")
    )
    events = daemon.events(["kernel"])
    image = cloud_kernel.image.read_bytes()
    # A file system mounted over the build directory sends no event: only a reload can know.
    with tmpfs_over(kernel_tree.image.parent):
        kernel_tree.write_in_place(image[: len(image) // 2])
        assert daemon.call("reload")["error"] is None
        assert "truncated" in _kernel_event(events, ok=False)["error"]
        # Seen without a reload now: the watch is on the mounted directory.
        kernel_tree.write_in_place(os.urandom(300_000))
        assert "not an x86 bzImage" in _kernel_event(events, ok=False)["error"]
    # Unmounted: back to the empty directory underneath.
    assert "no kernel image there yet" in _kernel_event(events, ok=False)["error"]
    events.close()
