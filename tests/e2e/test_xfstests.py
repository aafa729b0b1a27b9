"""The xfstests suite end to end: direct backend, host root shared over virtiofs, Debian's kernel.

fstests is not packaged for Debian 12, so a small stand-in tree (tests/fixtures/fstests: `check`
and the tests' group.list files) is copied into a temp xfstests.dir on the host, which the
guest sees through the shared root. It checks what nixvmd prepared (local.config, disks by
serial, the test fs made by the real mkfs.xfs) and answers in check's formats; nixvmd does
not know it is a stand-in.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
STANDIN = Path(__file__).parents[1] / "fixtures" / "fstests"


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
    """A host copy of the stand-in fstests tree, shared into the guest with the host root."""
    directory = tmp_path / "fstests"
    shutil.copytree(STANDIN, directory)
    return directory


@dataclass
class Finished:
    """A run of the stand-in to its end: its record, directory, console and the events seen."""

    record: dict[str, Any]
    run_dir: Path
    console: str
    events: EventStream

    @property
    def tests(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in self.record["tests"]}


RunStandin = Callable[..., Finished]


@pytest.fixture
def standin_run(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,
) -> RunStandin:
    """Start a daemon with `xfstests` (the [xfstests] lines) over the stand-in tree, write the
    kernel, and wait for the run's end (events of `kinds` are kept)."""

    def run(xfstests: str, kinds: tuple[str, ...] = ("run",)) -> Finished:
        state = tmp_path / "state"
        daemon = daemon_factory(
            _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, xfstests)
        )
        events = daemon.events(list(kinds))
        kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
        end = events.run_end(timeout=600)
        run_dir = state / "runs" / end["run_id"]
        record: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
        return Finished(record, run_dir, (run_dir / "console.log").read_text(errors="replace"), events)

    return run


def test_xfstests_runs_check_with_the_config_and_parses_its_results(standin_run: RunStandin) -> None:
    xfstests = """
args = ["generic/001", "generic/002", "generic/003"]

[[xfstests.sections]]
name = "xfs_crc"
fstyp = "xfs"
mkfs_options = "-m crc=1"
mount_options = "-o noatime"
extra = { USE_KMEMLEAK = "no" }
"""
    run = standin_run(xfstests, ("run", "test"))
    run_dir, record, console = run.run_dir, run.record, run.console
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

    tests = run.tests
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
    progress = [(e["test"], e["done"], e["total"]) for e in run.events.seen if e["event"] == "test"]
    assert ("generic/001", 0, 3) in progress
    assert ("generic/002", 1, 3) in progress
    assert progress[-1] == (None, 3, 3)
    run.events.close()


def test_a_test_running_past_its_hang_limit_ends_the_run_as_timeout_naming_it(
    standin_run: RunStandin,
) -> None:
    xfstests = """
args = ["generic/001", "hang/001"]
hang_floor = "2s"
hang_ceiling = "25s"
"""
    run = standin_run(xfstests)
    record = run.record
    assert record["outcome"] == "timeout", (record["reason"], run.console[-3000:])
    assert "hang/001 hung" in record["reason"]
    assert "run fstests hang/001 at " in run.console
    assert run.tests["generic/001"]["status"] == "pass"
    assert run.tests["hang/001"]["status"] == "timeout"  # its own verdict (crash resume: nothing after it)
    assert run.tests["hang/001"]["message"].startswith("test hang/001 hung: ")
    run.events.close()


def test_a_kernel_crash_mid_test_keeps_the_finished_tests_from_the_console(standin_run: RunStandin) -> None:
    # check sorts its tests (crash/ before generic/) unless told to keep the order given.
    run = standin_run('args = ["--exact-order", "generic/001", "crash/001"]')
    record = run.record
    assert record["outcome"] == "crashed", (record["reason"], run.console[-3000:])
    assert run.tests["generic/001"]["status"] == "pass"
    assert run.tests["crash/001"]["status"] == "crashed"  # its own verdict (crash resume: nothing after it)
    assert run.tests["crash/001"]["message"].startswith("kernel panic: ")
    assert not (run.run_dir / "results").exists()
    run.events.close()


def test_burn_tests_run_in_the_exact_order_given_for_the_seconds_and_verdict_burn_list_says(
    standin_run: RunStandin, fstests_dir: Path, tmp_path: Path
) -> None:
    (fstests_dir / "burn.list").write_text("burn/001 2 pass\nburn/002 3 fail\n")
    run = standin_run('args = ["-e", "generic/004", "--exact-order", "burn/002", "burn/001", "generic/004"]')
    record, console, tests = run.record, run.console, run.tests
    assert record["outcome"] == "failed", (record["reason"], console[-3000:])

    # check ran them in the order given, each busy for at least its burn.list seconds, and
    # expunged generic/004 (-e, read through bash's process substitution: /dev/fd is there).
    assert console.index("run fstests burn/002 at ") < console.index("run fstests burn/001 at ")
    assert "run fstests generic/004" not in console
    assert tests["burn/002"]["status"] == "fail"
    assert "+unexpected output" in tests["burn/002"]["message"]
    assert tests["burn/002"]["duration_s"] >= 3
    assert tests["burn/001"]["status"] == "pass"
    assert tests["burn/001"]["duration_s"] >= 2
    assert tests["generic/004"]["status"] == "skip"
    # The durations were kept for the next split.
    times = (tmp_path / "state" / "xfstests" / "check.time").read_text().splitlines()
    assert any(line.startswith("burn/002 ") for line in times)
    run.events.close()
