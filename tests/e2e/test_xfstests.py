"""The xfstests suite end to end: direct backend, host root shared over virtiofs, Debian's kernel.

fstests is not packaged for Debian 12, so a stand-in `check` (tests/fixtures/fstests/check)
is installed into a temp xfstests.dir on the host, which the guest sees through the shared
root. It checks what nixvmd prepared (local.config, disks by serial, the test fs made by
the real mkfs.xfs) and answers in check's formats; nixvmd does not know it is a stand-in.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, KernelTree, SampleKernel

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
STANDIN = Path(__file__).parents[1] / "fixtures" / "fstests" / "check"


def _config(
    tree: KernelTree,
    kernel: SampleKernel,
    state: Path,
    sock: Path,
    fstests: Path,
    xfstests: str,
    suite: str = "",
) -> str:
    return f"""
[kernel]
tree = "{tree.root}"
modules_dir = "{kernel.modules}"

[image]
share_host_root = true

[vm]
accel = "tcg"
memory = "768M"
cpus = 2
boot_timeout = "120s"

[suite]
kind = "xfstests"
timeout = "10m"
{suite}

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{sock}"

[xfstests]
dir = "{fstests}"
test_size = "320M"
scratch_size = "320M"
{xfstests}
"""


@pytest.fixture
def fstests_dir(tmp_path: Path) -> Path:
    """A host directory holding the stand-in check, shared into the guest with the host root."""
    directory = tmp_path / "fstests"
    directory.mkdir()
    shutil.copy(STANDIN, directory / "check")
    return directory


def _run(state: Path, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return record


def test_xfstests_runs_check_with_the_config_and_parses_its_results(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,
) -> None:
    state = tmp_path / "state"
    xfstests = """
args = ["generic/001", "generic/002", "generic/003"]

[[xfstests.sections]]
name = "xfs_crc"
fstyp = "xfs"
mkfs_options = "-m crc=1"
mount_options = "-o noatime"
extra = { USE_KMEMLEAK = "no" }
"""
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, xfstests)
    )
    events = daemon.events(["run", "test"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    run_dir = state / "runs" / end["run_id"]
    record = _run(state, end["run_id"])
    console = (run_dir / "console.log").read_text(errors="replace")
    assert record["outcome"] == "failed", (record["reason"], console[-3000:])

    # The disks were found by serial, the test fs made by mkfs.xfs, check run with the args.
    assert "nixvmd-xfstests: test /dev/vd" in console
    assert "mkfs.xfs -f -m crc=1 /dev/vd" in console
    standin = (run_dir / "results" / "standin-check.log").read_text()
    assert "args: -R xunit generic/001 generic/002 generic/003" in standin
    assert "config: /tmp/nixvmd-xfstests/local.config" in standin
    assert "xfs_db: magicnum = 0x58465342" in standin
    assert "verified /dev/vd" in standin and "is xfs" in standin
    assert "section xfs_crc FSTYP=xfs TEST_DEV=/dev/vd" in standin
    # Each run has its own disks, in its scratch dir, gone with the run (results read first).
    drives = " ".join(record["command"])
    for name in ("xfstests-test", "xfstests-scratch", "xfstests-results"):
        assert f"file={run_dir}/scratch/disks/{name}.img," in drives
    assert not (run_dir / "scratch").exists()

    # run fstests <t> at ... reached the console through /dev/kmsg.
    assert "run fstests generic/002 at " in console

    tests = {t["name"]: t for t in record["tests"]}
    assert set(tests) == {"generic/001", "generic/002", "generic/003"}
    assert tests["generic/001"]["status"] == "pass"
    assert tests["generic/001"]["duration_s"] == 1.0
    assert tests["generic/002"]["status"] == "fail"
    assert "output mismatch" in tests["generic/002"]["message"]
    assert "+unexpected output" in tests["generic/002"]["message"]
    assert tests["generic/003"]["status"] == "skip"
    assert "stand-in lacks the feature" in tests["generic/003"]["message"]
    artefacts = tests["generic/002"]["artefacts"]
    assert "results/xfs_crc/generic/002.out.bad" in artefacts
    assert "results/xfs_crc/generic/002.full" in artefacts
    assert "results/xfs_crc/generic/003.notrun" in tests["generic/003"]["artefacts"]
    for artefact in (*artefacts, "results/xfs_crc/check.log", "results/xfs_crc/result.xml"):
        assert (run_dir / artefact).is_file(), artefact
    assert (record["passed"], record["failed"], record["skipped"]) == (1, 1, 1)

    # Live progress came from the console: the running test, tests done, the known total.
    progress = [(e["test"], e["done"], e["total"]) for e in events.seen if e["event"] == "test"]
    assert ("generic/001", 0, 3) in progress
    assert ("generic/002", 1, 3) in progress
    assert progress[-1] == (None, 3, 3)
    events.close()


def test_a_test_running_past_its_hang_limit_ends_the_run_as_timeout_naming_it(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,
) -> None:
    state = tmp_path / "state"
    xfstests = """
args = ["generic/001", "hang/001"]
hang_floor = "2s"
hang_ceiling = "25s"
"""
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, xfstests)
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    record = _run(state, end["run_id"])
    console = (state / "runs" / end["run_id"] / "console.log").read_text(errors="replace")
    assert record["outcome"] == "timeout", (record["reason"], console[-3000:])
    assert "hang/001 hung" in record["reason"]
    assert "run fstests hang/001 at " in console
    tests = {t["name"]: t for t in record["tests"]}
    assert tests["generic/001"]["status"] == "pass"
    assert tests["hang/001"]["status"] == "error"
    events.close()


def test_a_kernel_crash_mid_test_keeps_the_finished_tests_from_the_console(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,
) -> None:
    state = tmp_path / "state"
    xfstests = 'args = ["generic/001", "crash/001"]'
    daemon = daemon_factory(
        _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, xfstests)
    )
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=600)
    record = _run(state, end["run_id"])
    console = (state / "runs" / end["run_id"] / "console.log").read_text(errors="replace")
    assert record["outcome"] == "crashed", (record["reason"], console[-3000:])
    tests = {t["name"]: t for t in record["tests"]}
    assert tests["generic/001"]["status"] == "pass"
    assert tests["crash/001"]["status"] == "error"
    assert "did not finish" in tests["crash/001"]["message"]
    assert not (state / "runs" / end["run_id"] / "results").exists()
    events.close()
