"""xfstests.dev_tree and xfstests.build with the daemon: a failed build, and a built tree in the guest.

The direct backend: a failed build ends the run `error` before anything boots; a good one
runs before the VM, whose guest sees what it made through the dev tree's share (mounted
over xfstests.dir, a path the host does not have, inside the shared host root).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.report.notification import EventKind, run_events
from nixvmd.vm.virtiofsd import VIRTIOFSD
from tests.conftest import DaemonProcess, KernelTree, SampleKernel
from tests.e2e.test_nix_backend import _record
from tests.e2e.test_xfstests import STANDIN, _config

Start = Callable[[str], DaemonProcess]
GUEST_DIR = "/opt/nixvmd-fstests"


def _dev_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "xfstests-dev"
    shutil.copytree(STANDIN, tree)
    return tree


def test_a_failed_build_ends_the_run_as_an_error_naming_the_build_and_boots_nothing(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    state = tmp_path / "state"
    build = "echo compiling src/aio.c; echo 'src/aio.c:3: error: expected ;' >&2; exit 2"
    lines = f'dev_tree = "{_dev_tree(tmp_path)}"\nbuild = {json.dumps(build)}\nargs = ["script/001"]'
    config = _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", Path(GUEST_DIR), lines)
    daemon = daemon_factory(config.replace("share_host_root = true", "share_host_root = false"))
    events = daemon.events(["run", "state"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=120)
    assert {"event": "state", "state": "building"} in [
        {k: e.get(k) for k in ("event", "state")} for e in events.seen
    ]
    assert end["outcome"] == "error", daemon.text_log()
    assert run_events(end) == {EventKind.BUILD_ERROR}  # notified as a build error, not the kernel's
    record = _record(state, end["run_id"])
    assert record["reason"].startswith(f"xfstests.build `{build}` failed in ")
    assert "(exit status 2): src/aio.c:3: error: expected ;" in record["reason"]
    run_dir = state / "runs" / end["run_id"]
    expected = f"$ {build}\ncompiling src/aio.c\nsrc/aio.c:3: error: expected ;\n"
    assert (run_dir / "build.log").read_text() == expected
    assert not (run_dir / "console.log").exists()  # nothing booted
    log = "\n".join(daemon.call("logs")["lines"])
    assert "xfstests.build: compiling src/aio.c" in log
    events.close()


@pytest.mark.vm
@pytest.mark.skipif(os.geteuid() != 0 or not Path(VIRTIOFSD).exists(), reason="virtiofs needs root")
def test_the_build_runs_before_the_vm_and_the_guest_sees_the_tree_it_built(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    tree = _dev_tree(tmp_path)
    script = tree / "tests" / "script" / "001"
    script.write_text('#!/bin/bash\necho "QA output created by 001"\ncat src/made-by-build\n')
    (tree / "tests" / "script" / "001.out").write_text("QA output created by 001\nmade by xfstests.build\n")
    state = tmp_path / "state"
    build = "mkdir -p src && echo 'made by xfstests.build' >src/made-by-build && echo built"
    lines = f'dev_tree = "{tree}"\nbuild = {json.dumps(build)}\nargs = ["script/001"]'
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", Path(GUEST_DIR), lines)
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    assert end["outcome"] == "passed", daemon.text_log()
    run_dir = state / "runs" / end["run_id"]
    assert (run_dir / "build.log").read_text() == f"$ {build}\nbuilt\n"
    assert [(t["name"], t["status"]) for t in _record(state, end["run_id"])["tests"]] == [
        ("script/001", "pass")
    ]
    assert f"mounted at {GUEST_DIR}" in (run_dir / "console.log").read_text(errors="replace")
    assert not Path(GUEST_DIR).exists()  # the guest's path, not the host's
    events.close()
