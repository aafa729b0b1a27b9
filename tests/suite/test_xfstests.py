"""The xfstests suite on the host: local.config, check's arguments, hang limits, results from the disk."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.config.schema import XfstestsConfig, XfstestsSection
from nixvmd.errors import StateSpaceError
from nixvmd.results.record import TestStatus
from nixvmd.results.store import disks_dir
from nixvmd.suite.xfstests.suite import XfstestsSuite, check_args, expected_total, hang_budget, local_config
from tests.conftest import Tmpfs

TWO_SECTIONS = XfstestsConfig(
    sections=(
        XfstestsSection("xfs_crc", "xfs", "-m crc=1", "-o noatime", (("USE_KMEMLEAK", "no"),)),
        XfstestsSection("ext4", "ext4"),
    ),
    test_dir="/mnt/t",
    scratch_mnt="/mnt/s",
)

RESULT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns="https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git" name="xfstests"
 failures="1" skipped="1" tests="3" time="3">
  <properties><property name="FSTYP" value="xfs"/></properties>
  <testcase classname="xfstests.xfs" name="generic/001" time="4"></testcase>
  <testcase classname="xfstests.xfs" name="generic/002" time="2">
    <failure message="- output mismatch (see /r/xfs/generic/002.out.bad)" type="TestFail" />
  </testcase>
  <testcase classname="xfstests.xfs" name="generic/003" time="0"><skipped message="no reflink" /></testcase>
</testsuite>
"""

CONSOLE = [
    "[    5.0] virtio_blk virtio2: [vda] 655360 512-byte logical blocks",
    "nixvmd-xfstests: test /dev/vda scratch /dev/vdb results /dev/vdc",
    "SECTION       -- xfs",
    "FSTYP         -- xfs (non-debug)",
    "[   16.3] run fstests generic/001 at 2026-11-26 16:56:28",
    "generic/001 3s ...  4s",
    "[   17.9] run fstests generic/002 at 2026-11-26 16:56:30",
    "generic/002 2s ... - output mismatch (see /r/xfs/generic/002.out.bad)",
    "    --- tests/generic/002.out",
    "    +++ /r/xfs/generic/002.out.bad",
    "    -Silence is golden",
    "    +oops",
    "[   19.0] run fstests generic/003 at 2026-11-26 16:56:32",
    "generic/003       [not run] no reflink",
    "Ran: generic/001 generic/002 generic/003",
    "Not run: generic/003",
    "Failures: generic/002",
    "Failed 1 of 3 tests",
]


def test_local_config_spells_out_every_key_of_every_section() -> None:
    text = local_config(TWO_SECTIONS, "/dev/vda", "/dev/vdb", "/tmp/r")
    assert text.splitlines()[1:] == [
        "",
        "[xfs_crc]",
        'FSTYP="xfs"',
        'TEST_DEV="/dev/vda"',
        'TEST_DIR="/mnt/t"',
        'SCRATCH_DEV="/dev/vdb"',
        'SCRATCH_MNT="/mnt/s"',
        'RESULT_BASE="/tmp/r/xfs_crc"',
        'MKFS_OPTIONS="-m crc=1"',
        'MOUNT_OPTIONS="-o noatime"',
        'USE_KMEMLEAK="no"',
        "",
        "[ext4]",
        'FSTYP="ext4"',
        'TEST_DEV="/dev/vda"',
        'TEST_DIR="/mnt/t"',
        'SCRATCH_DEV="/dev/vdb"',
        'SCRATCH_MNT="/mnt/s"',
        'RESULT_BASE="/tmp/r/ext4"',
        'MKFS_OPTIONS=""',
        'MOUNT_OPTIONS=""',
    ]
    assert text.startswith("#")


def test_check_runs_with_xunit_the_chosen_sections_then_the_users_args() -> None:
    config = XfstestsConfig(args=("-g", "auto", "-x", "dangerous"), run_sections=("a", "b"))
    assert check_args(config) == ["-R", "xunit", "-s", "a", "-s", "b", "-g", "auto", "-x", "dangerous"]
    assert check_args(XfstestsConfig(args=("generic/001",))) == ["-R", "xunit", "generic/001"]


def test_the_total_is_known_only_when_the_args_name_every_test() -> None:
    assert expected_total(XfstestsConfig(args=("generic/001", "xfs/042"))) == 2
    assert expected_total(XfstestsConfig(args=("generic/001",), sections=TWO_SECTIONS.sections)) == 2
    assert expected_total(XfstestsConfig(args=("-g", "quick"))) is None


@pytest.mark.parametrize(
    ("previous", "budget"),
    [(None, 3600.0), (1.0, 300.0), (30.0, 300.0), (31.0, 310.0), (100.0, 1000.0), (1000.0, 3600.0)],
)
def test_hang_budget_is_a_multiple_of_the_previous_duration_within_floor_and_ceiling(
    previous: float | None, budget: float
) -> None:
    assert hang_budget(XfstestsConfig(), previous) == budget


def test_the_job_carries_the_runner_the_config_and_the_disk_serials(tmp_path: Path) -> None:
    suite = XfstestsSuite(TWO_SECTIONS, tmp_path)
    job = suite.job()
    env = dict(job.env)
    assert "disk_by_serial" in job.command and "./check" in job.command
    assert env["NIXVMD_XFS_ARGS"] == "-R xunit -g quick"
    assert 'TEST_DEV="@TEST_DEV@"' in env["NIXVMD_XFS_LOCAL_CONFIG"]
    assert (env["NIXVMD_XFS_FSTYP"], env["NIXVMD_XFS_MKFS_OPTIONS"]) == ("xfs", "-m crc=1")
    assert env["NIXVMD_XFS_TEST_SERIAL"] == "nixvmd-xfs-test"
    assert env["NIXVMD_XFS_SCRATCH_SERIAL"] == "nixvmd-xfs-scratch"
    assert env["NIXVMD_XFS_RESULTS_SERIAL"] == "nixvmd-xfs-results"
    assert "export NIXVMD_XFS_DIR" in job.to_env_file()


def _results_disk(run_dir: Path, token: str, files: dict[str, str]) -> None:
    """A results disk image as the guest leaves it: a tar stream, then zeros."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in {"nixvmd-run": token + "\n", **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../escape")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    disks_dir(run_dir).mkdir(parents=True, exist_ok=True)
    (disks_dir(run_dir) / "xfstests-results.img").write_bytes(buf.getvalue() + bytes(1 << 16))


def _run(suite: XfstestsSuite, lines: list[str]) -> None:
    suite.guest_event("start", "xfstests")
    for line in lines:
        suite.console_line(line)


def test_results_merge_the_console_with_result_xml_and_artefacts_from_the_disk(tmp_path: Path) -> None:
    state, run_dir = tmp_path / "state", tmp_path / "run"
    run_dir.mkdir()
    suite = XfstestsSuite(XfstestsConfig(args=("generic/001", "generic/002", "generic/003")), state)
    _run(suite, CONSOLE)
    suite.guest_event("exit", "1")
    _results_disk(
        run_dir,
        dict(suite.job().env)["NIXVMD_XFS_TOKEN"],
        {
            "./xfs/result.xml": RESULT_XML,
            "./xfs/check.log": "Ran: generic/001\n",
            "./xfs/check.time": "generic/001 4\n",
            "./xfs/generic/002.out.bad": "oops\n",
            "./xfs/generic/002.full": "full log\n",
            "./xfs/generic/003.notrun": "no reflink\n",
        },
    )
    tests = {t.name: t for t in suite.results(1, run_dir, True)}
    assert tests["generic/001"].status is TestStatus.PASS and tests["generic/001"].duration_s == 4.0
    assert tests["generic/002"].status is TestStatus.FAIL
    assert "+oops" in tests["generic/002"].message
    assert {t.collection for t in tests.values()} == {"xfs"}  # the section, for junit's classname
    assert tests["generic/002"].artefacts == (
        "results/xfs/generic/002.full",
        "results/xfs/generic/002.out.bad",
    )
    assert tests["generic/003"].status is TestStatus.SKIP and tests["generic/003"].message == "no reflink"
    assert (run_dir / "results" / "xfs" / "check.log").is_file()
    assert (run_dir / "results" / "xfs" / "result.xml").is_file()
    assert not (tmp_path / "escape").exists()
    assert "generic/002 2\n" in (state / "xfstests" / "check.time").read_text()


def test_a_results_disk_from_an_earlier_run_is_ignored_and_the_console_decides(tmp_path: Path) -> None:
    state, run_dir = tmp_path / "state", tmp_path / "run"
    run_dir.mkdir()
    _results_disk(run_dir, "not-this-run", {"./xfs/result.xml": RESULT_XML})
    suite = XfstestsSuite(XfstestsConfig(), state)
    _run(suite, CONSOLE[:8])  # the guest died while generic/002 ran
    tests = {t.name: t for t in suite.results(None, run_dir, False)}
    assert tests["generic/001"].status is TestStatus.PASS
    assert tests["generic/002"].status in (TestStatus.FAIL, TestStatus.ERROR)
    assert not (run_dir / "results" / "xfs").exists()


def test_a_runner_that_failed_before_check_gives_one_error_with_its_output(tmp_path: Path) -> None:
    suite = XfstestsSuite(XfstestsConfig(), tmp_path / "state")
    _run(suite, ["nixvmd-xfstests: no disk with serial nixvmd-xfs-test (disks: )"])
    suite.guest_event("exit", "2")
    (tests,) = suite.results(2, tmp_path, True)
    assert tests.name == "xfstests" and tests.status is TestStatus.ERROR
    assert "exit status 2" in tests.message and "no disk with serial" in tests.message
    assert tests.headline == "exit status 2: nixvmd-xfstests: no disk with serial nixvmd-xfs-test (disks: )"


def test_progress_and_the_hang_deadline_follow_the_running_test(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "xfstests").mkdir(parents=True)
    (state / "xfstests" / "check.time").write_text("generic/002 100\n")
    suite = XfstestsSuite(XfstestsConfig(args=("generic/001", "generic/002", "generic/003")), state)
    assert suite.deadline() is None
    _run(suite, CONSOLE[:5])
    progress = suite.progress()
    assert (progress.test, progress.done, progress.total) == ("generic/001", 0, 3)
    limit, reason = suite.deadline() or (0.0, "")
    assert limit == pytest.approx(time.monotonic() + 3600, abs=5)
    assert "generic/001" in reason and "no previous duration" in reason
    _run(suite, CONSOLE[5:7])
    assert suite.progress().test == "generic/002" and suite.progress().done == 1
    limit, reason = suite.deadline() or (0.0, "")
    assert limit == pytest.approx(time.monotonic() + 1000, abs=5)
    assert "generic/002 hung" in reason and "100s last time" in reason
    _run(suite, CONSOLE[7:])
    assert suite.deadline() is None


@pytest.mark.parametrize(
    "lines",
    [
        [
            "generic/001 [   16.300000] run fstests generic/001 at 2026-11-26 16:56:28",
            "[   16.400000] XFS (vda): Mounting V5 Filesystem",
            "  3s ... ",
        ],
        [
            "[   16.300000] run fstests generic/001 at 2026-11-26 16:56:28generic/001 3s ... ",
            "[   16.400000] XFS (vda): Mounting V5 Filesystem",
        ],
        ["generic/001 3s ... run fstests generic/001 at 2026-11-26 16:56:28"],
    ],
    ids=["check-first", "kernel-first", "no-timestamp"],
)
def test_a_kernel_line_sharing_the_tests_line_keeps_progress_and_the_hang_deadline(
    tmp_path: Path, lines: list[str]
) -> None:
    suite = XfstestsSuite(XfstestsConfig(args=("generic/001", "generic/002")), tmp_path / "state")
    _run(suite, [*CONSOLE[:4], *lines])
    for _ in range(2):
        progress = suite.progress()
        assert (progress.test, progress.done) == ("generic/001", 0)
        hang = suite.deadline()
        assert hang is not None and "test generic/001 hung" in hang[1]
        suite.console_line("[   17.000000] XFS (vda): Unmounting Filesystem")

    suite.console_line("4s")
    progress = suite.progress()
    assert (progress.test, progress.done) == (None, 1)
    assert suite.deadline() is None


def test_result_xml_in_fstests_namespace_is_read(tmp_path: Path) -> None:
    from nixvmd.suite.xfstests.results import parse_result_xml

    path = tmp_path / "result.xml"
    path.write_text(RESULT_XML)
    report = parse_result_xml(path)
    assert report.error == ""
    assert report.properties == {"FSTYP": "xfs"}
    assert report.attributes["tests"] == "3"
    assert [(t.name, t.status, t.message) for t in report.tests] == [
        ("generic/001", TestStatus.PASS, ""),
        ("generic/002", TestStatus.FAIL, "- output mismatch (see /r/xfs/generic/002.out.bad)"),
        ("generic/003", TestStatus.SKIP, "no reflink"),
    ]


def test_results_nested_one_section_deeper_are_found_too(tmp_path: Path) -> None:
    state, run_dir = tmp_path / "state", tmp_path / "run"
    run_dir.mkdir()
    suite = XfstestsSuite(XfstestsConfig(), state)
    _results_disk(
        run_dir,
        dict(suite.job().env)["NIXVMD_XFS_TOKEN"],
        {"./xfs/xfs/result.xml": RESULT_XML, "./xfs/xfs/generic/002.out.bad": "oops\n"},
    )
    tests = {t.name: t for t in suite.results(1, run_dir, True)}
    assert tests["generic/002"].status is TestStatus.FAIL
    assert tests["generic/002"].artefacts == ("results/xfs/xfs/generic/002.out.bad",)
    assert tests["generic/001"].duration_s == 4.0


def test_the_eta_adds_up_the_previous_durations_of_the_tests_still_to_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "xfstests").mkdir(parents=True)
    (state / "xfstests" / "check.time").write_text("generic/001 10\ngeneric/002 100\ngeneric/003 30\n")
    suite = XfstestsSuite(XfstestsConfig(args=("generic/001", "generic/002", "generic/003")), state)
    assert suite.progress().eta_s == 140
    _run(suite, CONSOLE[:5])  # generic/001 running, nothing done
    eta = suite.progress().eta_s
    assert eta is not None and 139 <= eta <= 140
    _run(suite, CONSOLE[5:7])  # generic/001 done, generic/002 running
    eta = suite.progress().eta_s
    assert eta is not None and 129 <= eta <= 130
    assert XfstestsSuite(XfstestsConfig(args=("-g", "quick")), state).progress().eta_s is None


def test_no_room_for_the_results_says_so_and_leaves_no_partial_file(
    small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    state, run_dir = tmp_path / "state", tmp_path / "run"
    # The results disk is in the run's scratch; what is extracted from it finds no room.
    fs = small_tmpfs(run_dir / "results", 1 << 20)
    suite = XfstestsSuite(XfstestsConfig(args=("generic/001",)), state)
    _run(suite, CONSOLE[:6])
    suite.guest_event("exit", "0")
    token = dict(suite.job().env)["NIXVMD_XFS_TOKEN"]
    _results_disk(run_dir, token, {"./xfs/result.xml": RESULT_XML, "./xfs/generic/001.full": "x" * (2 << 20)})
    with pytest.raises(StateSpaceError) as caught:
        suite.results(0, run_dir, True)
    text = str(caught.value)
    assert text.startswith(f"no space left on {fs.path} (tmpfs): extracting the fstests result ")
    assert f" {fs.path}/xfs/generic/001.full needs 2.0 MiB, " in text
    assert not (fs.path / "xfs" / "generic" / "001.full").exists()
    assert (fs.path / "xfs" / "result.xml").is_file()
