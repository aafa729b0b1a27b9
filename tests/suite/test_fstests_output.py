"""fstests: check output (streamed), result.xml, check.time, artefacts, and their merge."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixvmd.results.record import TestStatus
from nixvmd.suite.xfstests.output import CheckOutputParser, CheckRun, parse_check_output
from nixvmd.suite.xfstests.results import (
    find_artefacts,
    merge_results,
    parse_check_time,
    parse_result_xml,
    read_check_time,
    to_test_results,
)
from nixvmd.suite.xfstests.verdict import FstestsResult

DATA = Path(__file__).parent / "data"
PASS, FAIL, SKIP, ERROR = TestStatus.PASS, TestStatus.FAIL, TestStatus.SKIP, TestStatus.ERROR


def read(name: str) -> str:
    return (DATA / name).read_text()


def by_name(run: CheckRun, name: str, section: str | None = None) -> FstestsResult:
    return next(t for t in run.tests if t.name == name and t.section == section)


def test_passing_tests_have_their_runtime_and_the_previous_one() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    first = by_name(run, "generic/001")
    assert (first.status, first.duration_s, first.previous_s) == (PASS, 4.0, 5.0)
    second = by_name(run, "generic/002")
    assert (second.status, second.duration_s, second.previous_s) == (PASS, 1.0, None)


def test_not_run_and_expunged_are_skips_with_their_reason() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    assert by_name(run, "generic/003").status is SKIP
    assert by_name(run, "generic/003").message == "this test requires a valid $SCRATCH_DEV"
    assert (by_name(run, "generic/004").status, by_name(run, "generic/004").message) == (
        SKIP,
        "expunged",
    )


def test_output_mismatch_headline_is_the_first_hunk_then_the_diff_lines() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    failed = by_name(run, "generic/005")
    assert failed.status is FAIL
    assert failed.message.splitlines()[0] == (
        "output mismatch at line 2: -Silence is golden "
        "+touch: cannot touch '/mnt/test/005.f': No space left on device"
    )
    assert failed.message.splitlines()[1:] == [
        "output mismatch (see /root/xfstests/results//generic/005.out.bad)",
        "--- tests/generic/005.out\t2024-01-01 00:00:00.000000000 +0000",
        "+++ /root/xfstests/results//generic/005.out.bad\t2024-01-01 00:00:00.000000000 +0000",
        "@@ -1,3 +1,4 @@",
        " QA output created by 005",
        "-Silence is golden",
        "+touch: cannot touch '/mnt/test/005.f': No space left on device",
        "...",
    ]
    assert failed.artefacts == ("/root/xfstests/results//generic/005.out.bad",)


def test_exit_status_and_mismatch_on_one_line_are_both_reported() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    failed = by_name(run, "generic/006")
    assert failed.status is FAIL
    assert failed.message.splitlines()[:3] == [
        "output mismatch at line 2: +_fail: mount failed",
        "failed, exit status 1",
        "output mismatch (see /root/xfstests/results//generic/006.out.bad)",
    ]
    assert (by_name(run, "generic/008").status, by_name(run, "generic/008").message) == (
        FAIL,
        "failed, exit status 1",
    )


def test_dmesg_and_fsck_findings_fail_the_test_and_name_the_artefact() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    dmesg = by_name(run, "generic/007")
    assert dmesg.status is FAIL
    assert dmesg.message.startswith("_check_dmesg: something found in dmesg")
    assert dmesg.artefacts == ("/root/xfstests/results//generic/007.dmesg",)
    fsck = by_name(run, "xfs/009")
    assert fsck.status is FAIL
    assert fsck.message == "_check_xfs_filesystem: filesystem on /dev/vdb is inconsistent (r)"
    assert fsck.artefacts == ("/root/xfstests/results//xfs/009.full",)


def test_headers_and_closing_summary_are_kept() -> None:
    run = parse_check_output(read("fstests_plain.out"))

    assert run.headers[None]["FSTYP"] == "xfs (non-debug)"
    assert run.headers[None]["MKFS_OPTIONS"] == "-f -m reflink=1,rmapbt=1 -i sparse=1 /dev/vdc"
    (summary,) = run.summaries
    assert (summary.failed, summary.total) == (5, 9)
    assert summary.not_run == ("generic/003",)
    assert len(run.tests) == 10
    assert run.complete


def test_sections_keep_the_section_and_qualify_names_when_there_are_several() -> None:
    run = parse_check_output(read("fstests_sections.out"))

    assert [(t.section, t.name, t.status) for t in run.tests] == [
        ("xfs_4k", "generic/001", PASS),
        ("xfs_4k", "generic/002", FAIL),
        ("ext4", "generic/001", PASS),
        ("ext4", "generic/002", PASS),
    ]
    assert [t.name for t in to_test_results(run.tests)] == [
        "xfs_4k:generic/001",
        "xfs_4k:generic/002",
        "ext4:generic/001",
        "ext4:generic/002",
    ]
    assert run.headers["ext4"]["MOUNT_OPTIONS"] == "-o acl,user_xattr /dev/vdc /mnt/scratch"
    assert run.complete


def test_one_section_keeps_plain_names() -> None:
    run = parse_check_output(read("fstests_sections.out"))
    xfs_only = [t for t in run.tests if t.section == "xfs_4k"]

    assert [t.name for t in to_test_results(xfs_only)] == ["generic/001", "generic/002"]


def test_an_interrupted_run_reports_the_running_test_as_unfinished() -> None:
    run = parse_check_output(read("fstests_interrupted.out"))

    interrupted = by_name(run, "generic/002")
    assert (interrupted.status, interrupted.message) == (
        ERROR,
        "did not finish: check was interrupted",
    )
    assert not run.complete


def test_a_crash_mid_test_reports_the_running_test_as_unfinished() -> None:
    parser = CheckOutputParser()
    running = []
    for line in read("fstests_console_crash.log").splitlines():
        parser.feed(line)
        running.append(parser.running)
    run = parser.finish()

    assert running[1] == "generic/001"
    assert running[-1] == "generic/002"
    assert [(t.name, t.status) for t in run.tests] == [
        ("generic/001", PASS),
        ("generic/002", ERROR),
    ]
    assert run.tests[1].message.startswith("did not finish: the output ended while it ran")
    assert not run.complete


def test_the_console_line_alone_tells_which_test_runs() -> None:
    parser = CheckOutputParser()
    parser.feed("[   13.000000][ T345] run fstests generic/002 at 2024-01-01 00:00:03")

    assert (parser.running, parser.done) == ("generic/002", 0)
    run = parser.finish()
    assert [(t.name, t.status) for t in run.tests] == [("generic/002", ERROR)]


def _progress(lines: list[str]) -> tuple[list[tuple[str | None, int]], CheckRun]:
    """(running, done) after each line, and the whole run."""
    parser = CheckOutputParser()
    parser.feed("FSTYP         -- xfs (non-debug)")
    seen = []
    for line in lines:
        parser.feed(line)
        seen.append((parser.running, parser.done))
    return seen, parser.finish()


RUN_001 = "run fstests generic/001 at 2026-11-28 10:00:01"
RUN_002 = "run fstests generic/002 at 2026-11-28 10:00:07"


@pytest.mark.parametrize(
    "first",
    [
        f"generic/001 [   12.345678] {RUN_001}",  # check's text, then the kernel's line
        f"generic/001 [   12.345678][  T412] {RUN_001}",  # with CONFIG_PRINTK_CALLER
        f"generic/001 {RUN_001}",  # a kernel without printk timestamps
        f"gener[   12.345678] {RUN_001}",  # the kernel's line in the middle of a word
    ],
    ids=["check-first", "caller-id", "no-timestamp", "mid-word"],
)
def test_a_kernel_line_inside_checks_test_line_keeps_the_test_running_until_its_result(first: str) -> None:
    rest = "ic/001 5s ... " if first.startswith("gener[") else " 5s ... "
    seen, run = _progress(
        [
            first,
            "[   12.400000] XFS (vdb): Mounting V5 Filesystem 1b2c3d4e",
            "[   12.500000] XFS (vdb): Ending clean mount",
            rest,
            "[   17.000000] XFS (vdb): Unmounting Filesystem 1b2c3d4e",
            "6s",
        ]
    )

    assert seen == [("generic/001", 0)] * 5 + [(None, 1)]
    assert [(t.name, t.status, t.previous_s, t.duration_s) for t in run.tests] == [
        ("generic/001", PASS, 5.0, 6.0)
    ]


@pytest.mark.parametrize(
    "first",
    [
        f"[   12.345678] {RUN_001}generic/001 5s ... ",
        f"{RUN_001}generic/001 5s ... ",
    ],
    ids=["timestamp", "no-timestamp"],
)
def test_checks_text_after_the_kernels_run_fstests_line_is_read_too(first: str) -> None:
    seen, run = _progress([first, "[   12.400000] XFS (vdb): Mounting V5 Filesystem", "6s"])

    assert seen == [("generic/001", 0), ("generic/001", 0), (None, 1)]
    assert [(t.name, t.status, t.previous_s) for t in run.tests] == [("generic/001", PASS, 5.0)]


def test_the_next_tests_kernel_line_inside_the_last_verdict_finishes_that_test_whole() -> None:
    # check printed "generic/001 5s ... 6s" and its newline, but the serial port had only
    # sent "generic/001 5s ... 6" when the kernel wrote generic/002's line.
    seen, run = _progress(
        [
            f"generic/001 5s ... [   12.345678] {RUN_001}",
            "[   13.000000] XFS (vdb): Unmounting Filesystem",
            f"6[   18.000000] {RUN_002}",
            "s",
            "generic/002 2s ... [   18.100000] XFS (vdc): Mounting V5 Filesystem",
        ]
    )

    assert seen == [
        ("generic/001", 0),
        ("generic/001", 0),
        ("generic/002", 0),
        ("generic/002", 1),
        ("generic/002", 1),
    ]
    assert [(t.name, t.status, t.duration_s) for t in run.tests] == [
        ("generic/001", PASS, 6.0),
        ("generic/002", ERROR, None),
    ]
    assert run.tests[1].message.startswith("did not finish: the output ended")


def test_a_failure_keeps_its_diff_when_a_kernel_line_splits_its_test_line() -> None:
    seen, run = _progress(
        [
            f"generic/001 5s ... [   12.345678] {RUN_001}",
            "- output mismatch (see /r/generic/001.out.bad)",
            "    --- tests/generic/001.out",
            "    +++ /r/generic/001.out.bad",
            f"generic/002 [   18.000000] {RUN_002}",
            " 1s ... 1s",
        ]
    )

    assert seen[0] == ("generic/001", 0)
    assert seen[-2:] == [("generic/002", 1), (None, 2)]
    failed = run.tests[0]
    assert (failed.name, failed.status) == ("generic/001", FAIL)
    assert failed.message.splitlines() == [
        "output mismatch (see /r/generic/001.out.bad)",
        "--- tests/generic/001.out",
        "+++ /r/generic/001.out.bad",
    ]
    assert [(t.name, t.status) for t in run.tests[1:]] == [("generic/002", PASS)]


def test_a_crash_while_checks_line_waits_for_its_end_reports_that_test() -> None:
    seen, run = _progress(
        [
            f"generic/001 5s ... [   12.345678] {RUN_001}",
            "[   13.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "[   13.000100] Kernel panic - not syncing: Fatal exception",
        ]
    )

    assert seen == [("generic/001", 0)] * 3
    assert [(t.name, t.status, t.previous_s) for t in run.tests] == [("generic/001", ERROR, 5.0)]


def test_passes_are_reported_at_once_and_failures_when_the_next_test_starts() -> None:
    parser = CheckOutputParser()
    lines = read("fstests_plain.out").splitlines()
    reported = {}
    for number, line in enumerate(lines):
        for test in parser.feed(line):
            reported[test.name] = number

    assert lines[reported["generic/001"]].startswith("generic/001")
    assert lines[reported["generic/005"]].startswith("generic/006")
    assert lines[reported["xfs/009"]].startswith("generic/010")
    assert parser.done == 10


def test_timestamp_mode_not_run_reason_on_the_next_line() -> None:
    run = parse_check_output(
        "generic/003 2s ... [12:00:00] [not run]\n\tgeneric/003 -- requires a scratch device\n"
        "generic/004 1s ...  [12:00:01] [12:00:02] 1s\n"
    )

    assert [(t.name, t.status, t.message) for t in run.tests] == [
        ("generic/003", SKIP, "requires a scratch device"),
        ("generic/004", PASS, ""),
    ]


def test_old_check_dmesg_line_after_the_runtime_turns_the_pass_into_a_failure() -> None:
    parser = CheckOutputParser()
    first = parser.feed("generic/001 3s ... 3s")
    parser.feed("_check_dmesg: something found in dmesg (see /r/generic/001.dmesg)")
    again = parser.feed("generic/002 1s ... 1s")

    assert [t.status for t in first] == [PASS]
    assert [(t.name, t.status) for t in again] == [("generic/001", FAIL), ("generic/002", PASS)]
    assert [t.name for t in parser.finish().tests] == ["generic/001", "generic/002"]


def test_a_summary_of_thousands_of_tests_is_read_whole() -> None:
    names = [f"generic/{i:03d}" for i in range(1000)] + [f"xfs/{i:03d}" for i in range(1000)]
    run = parse_check_output(f"Ran: {' '.join(names)}\nPassed all 2000 tests\n")

    assert [t.name for t in run.tests] == names
    assert run.summaries[0].total == 2000


def test_tests_only_named_in_the_summary_are_filled_in() -> None:
    run = parse_check_output(
        "generic/001 1s ... 1s\nRan: generic/001 generic/002 generic/003\n"
        "Not run: generic/003\nFailures: generic/002 gener\nFailed 1 of 3 tests\n"
    )

    assert [(t.name, t.status) for t in run.tests] == [
        ("generic/001", PASS),
        ("generic/002", FAIL),
        ("generic/003", SKIP),
    ]


def test_result_xml_gives_status_time_message_and_properties() -> None:
    report = parse_result_xml(DATA / "result.xml")

    assert report.error == ""
    assert report.attributes["tests"] == "6"
    assert report.properties["FSTYP"] == "xfs"
    assert [(t.name, t.section, t.status, t.duration_s) for t in report.tests] == [
        ("generic/001", None, PASS, 4.0),
        ("generic/003", None, SKIP, 0.0),
        ("generic/005", None, FAIL, 3.0),
        ("generic/007", None, FAIL, 5.0),
        ("generic/011", None, PASS, 12.0),
        ("generic/012", None, SKIP, 0.0),
    ]
    failed = report.tests[2].message.splitlines()
    assert failed[0].startswith("output mismatch at line 2: -Silence is golden +touch: cannot touch")
    assert failed[1] == "- output mismatch (see /root/xfstests/results//generic/005.out.bad)"
    assert "-Silence is golden" in failed


def test_a_truncated_result_xml_keeps_the_cases_read() -> None:
    data = (DATA / "result.xml").read_bytes()
    report = parse_result_xml(io.BytesIO(data[: data.index(b"generic/007")]))

    assert [t.name for t in report.tests] == ["generic/001", "generic/003", "generic/005"]
    assert "truncated" in report.error


def test_a_missing_result_xml_is_an_error_not_an_exception(tmp_path: Path) -> None:
    report = parse_result_xml(tmp_path / "result.xml")

    assert report.tests == ()
    assert "could not be read" in report.error


def test_a_result_xml_with_a_bad_encoding_declaration_is_an_error() -> None:
    report = parse_result_xml(io.BytesIO(b'<?xml version="1.0" encoding="UT1-8"?><testsuite/>'))

    assert (report.tests, report.error.startswith("result.xml could not be read")) == ((), True)


def test_result_xml_section_comes_from_the_classname() -> None:
    xml = (
        b'<testsuite name="xfstests"><testcase classname="xfstests.xfs_4k" '
        b'name="xfs/001" time="2"/></testsuite>'
    )

    (case,) = parse_result_xml(io.BytesIO(xml)).tests
    assert (case.section, case.name, case.status) == ("xfs_4k", "xfs/001", PASS)


def test_check_time_gives_seconds_per_test_and_skips_bad_lines(tmp_path: Path) -> None:
    assert read_check_time(DATA / "check.time") == {
        "generic/001": 4.0,
        "generic/002": 1.0,
        "generic/005": 3.0,
        "generic/010": 1.0,
        "xfs/009": 1.0,
    }
    assert read_check_time(tmp_path / "missing") == {}
    assert parse_check_time("") == {}


def make_results(base: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (base / relative).parent.mkdir(parents=True, exist_ok=True)
        (base / relative).write_text(text)


def test_artefacts_are_found_with_and_without_sections(tmp_path: Path) -> None:
    make_results(
        tmp_path,
        {
            "generic/005.out.bad": "x",
            "generic/005.full": "x",
            "xfs/009.full": "x",
            "xfs_4k/generic/002.out.bad": "x",
            "xfs_4k/generic/002.dmesg.gz": "x",
            "check.log": "x",
            "generic/005.out": "not an artefact",
        },
    )

    found = find_artefacts(tmp_path)
    assert found == {
        (None, "generic/005"): (
            str(tmp_path / "generic/005.full"),
            str(tmp_path / "generic/005.out.bad"),
        ),
        (None, "xfs/009"): (str(tmp_path / "xfs/009.full"),),
        ("xfs_4k", "generic/002"): (
            str(tmp_path / "xfs_4k/generic/002.dmesg.gz"),
            str(tmp_path / "xfs_4k/generic/002.out.bad"),
        ),
    }
    assert find_artefacts(tmp_path / "missing") == {}


def test_merge_result_xml_decides_status_and_time_check_output_keeps_the_diff(
    tmp_path: Path,
) -> None:
    check = parse_check_output(read("fstests_plain.out")).tests
    xunit = parse_result_xml(DATA / "result.xml").tests
    merged = {t.name: t for t in merge_results(check, xunit)}

    assert merged["generic/001"].duration_s == 4.0
    assert merged["generic/005"].message.startswith("output mismatch at line 2: -Silence is golden +touch")
    assert merged["generic/011"].status is PASS  # only in result.xml
    assert list(merged)[:3] == ["generic/001", "generic/002", "generic/003"]


def test_merge_notrun_file_gives_the_skip_reason(tmp_path: Path) -> None:
    make_results(tmp_path, {"generic/003.notrun": "xfs_io falloc failed (old kernel?)\n"})
    check = [FstestsResult("generic/003", None, SKIP)]

    (merged,) = merge_results(check, (), find_artefacts(tmp_path))
    assert (merged.status, merged.message) == (SKIP, "xfs_io falloc failed (old kernel?)")
    assert merged.artefacts == (str(tmp_path / "generic/003.notrun"),)


def test_merge_a_splat_in_dmesg_turns_a_pass_into_a_failure(tmp_path: Path) -> None:
    make_results(
        tmp_path,
        {
            "generic/001.dmesg": "[ 5.0] run fstests generic/001 at 2024-01-01 00:00:00\n"
            "[ 5.1] WARNING: CPU: 0 PID: 7 at fs/xfs/xfs_log.c:10 xlog_foo+0x1/0x2 [xfs]\n",
            "generic/002.dmesg": "[ 6.0] run fstests generic/002 at 2024-01-01 00:00:01\n"
            "[ 6.1] XFS (vdb): Mounting V5 Filesystem\n",
        },
    )
    check = [
        FstestsResult("generic/001", None, PASS, 1.0),
        FstestsResult("generic/002", None, PASS, 1.0),
    ]

    first, second = merge_results(check, (), find_artefacts(tmp_path))
    assert first.status is FAIL
    assert first.message.startswith("kernel warning in dmesg: WARNING: CPU: 0 PID: 7 at fs/xfs/xfs_log.c:10")
    assert second.status is PASS  # KEEP_DMESG=yes keeps clean logs too


def test_merge_reads_compressed_kernel_logs(tmp_path: Path) -> None:
    (tmp_path / "generic").mkdir()
    with gzip.open(tmp_path / "generic/001.dmesg.gz", "wt") as f:
        f.write("[ 5.1] BUG: KASAN: slab-use-after-free in xfs_buf_rele+0x3c/0x4a0 [xfs]\n")
    (tmp_path / "generic/002.dmesg.gz").write_bytes(b"not gzip")
    check = [FstestsResult("generic/001", None, PASS), FstestsResult("generic/002", None, PASS)]

    first, second = merge_results(check, (), find_artefacts(tmp_path))
    assert (first.status, second.status) == (FAIL, FAIL)
    assert first.message.startswith("kernel kasan in dmesg: BUG: KASAN: slab-use-after-free")
    assert second.message.startswith("kernel log saved but unreadable")


def test_merge_collapses_reruns_to_the_worst_verdict() -> None:
    check = [
        FstestsResult("generic/001", None, PASS),
        FstestsResult("generic/001", None, FAIL, message="boom"),
    ]

    (merged,) = merge_results(check)
    assert (merged.status, merged.message) == (FAIL, "boom (1 of 2 runs failed)")


CHECK_LOGS = [
    "fstests_plain.out",
    "fstests_sections.out",
    "fstests_console_crash.log",
    "fstests_interrupted.out",
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CHECK_LOGS), st.data())
def test_truncation_keeps_finished_tests_and_their_statuses(name: str, data: st.DataObject) -> None:
    lines = read(name).splitlines()
    cut = data.draw(st.integers(0, len(lines)))
    full, prefix = CheckOutputParser(), CheckOutputParser()
    full_finished = [t for line in lines for t in full.feed(line)]
    finished = [t for line in lines[:cut] for t in prefix.feed(line)]
    run = prefix.finish()

    assert finished == full_finished[: len(finished)]
    assert list(run.tests[: len(finished)]) == finished


CHECKISH = st.sampled_from(
    [
        "generic/001 3s ...  3s",
        "generic/002",
        "generic/003 [not run] x",
        "    --- diff",
        "Ran: a b",
        "Failures: generic/002",
        "Failed 1 of 2 tests",
        "Passed all 1 tests",
        "SECTION       -- s",
        "_check_dmesg: something found in dmesg (see /x)",
        "[ 1.000000] run fstests generic/004 at 2024-01-01 00:00:00",
        "generic/005 1s ... [failed, exit status 1]- output mismatch (see /r/005.out.bad)",
        "Interrupted!",
        "(see /r/x.full for details)",
        "\tgeneric/003 -- why",
        "generic/006 Ran: generic/006",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(CHECKISH, st.text(max_size=40)), max_size=60))
def test_garbage_check_output_never_raises(lines: list[str]) -> None:
    parser = CheckOutputParser()
    for line in lines:
        parser.feed(line)
    run = parser.finish()

    assert all(t.status in TestStatus for t in run.tests)
    to_test_results(run.tests)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4000), st.binary(max_size=50))
def test_truncated_or_garbled_result_xml_never_raises(cut: int, junk: bytes) -> None:
    data = (DATA / "result.xml").read_bytes()[:cut] + junk

    report = parse_result_xml(io.BytesIO(data))
    assert len(report.tests) <= 6
