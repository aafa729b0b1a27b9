"""The run store: run ids, run.json round trips, junit.xml, finding the latest run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nixvmd.errors import StateSpaceError
from nixvmd.results.queries import NoSuchRun, run_console
from nixvmd.results.record import Outcome, RunRecord, Splat, TestResult, TestStatus
from nixvmd.results.store import RunStore, disks_dir, scratch_dir
from nixvmd.suite.xfstests.output import parse_check_output
from nixvmd.suite.xfstests.results import to_test_results
from tests.conftest import Tmpfs
from tests.kunit_failures import SIMPLE_HEADLINE, kunit_record

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    """An empty store in a fresh state dir."""
    return RunStore(tmp_path / "state")


@pytest.fixture
def full_record(store: RunStore) -> RunRecord:
    """A finished xfstests run with every field set: each test status, splats, regressions."""
    run_id, _ = store.new_run_dir(T0)
    return RunRecord(
        id=run_id,
        suite="xfstests",
        kernel_path="/src/linux/arch/x86/boot/bzImage",
        kernel_version="6.1.0-test (me@host) #3 SMP",
        backend="direct",
        started_at=T0,
        outcome=Outcome.FAILED,
        reason="2 tests failed",
        finished_at=T0 + 93.25,
        exit_status=1,
        accel="tcg",
        tests=[
            TestResult("generic/001", TestStatus.PASS, 4.5),
            TestResult(
                "generic/002",
                TestStatus.FAIL,
                7.0,
                "- output mismatch (see results/generic/002.out.bad)\n--- 002.out\n+++ 002.out.bad",
                ("generic/002.out.bad", "generic/002.full"),
            ),
            TestResult("generic/003", TestStatus.SKIP, None, "not suitable for this filesystem type"),
            TestResult(
                "xfs/004", TestStatus.ERROR, 0.0, "_check_dmesg: something found in dmesg\nsee 004.dmesg"
            ),
            TestResult("xfs/005", TestStatus.FAIL, 1.0, "[failed, exit status 1]"),
        ],
        regressions=["generic/002"],
        fixes=["generic/010"],
        known_failures=["xfs/005"],
        new_skips=["generic/003"],
        splats=[
            Splat("warning", "WARNING: CPU: 0 PID: 1 at fs/xfs/xfs_log.c:123", "generic/002"),
            Splat("bug", "BUG: unable to handle page fault", None),
        ],
        phases={"boot": 2.6, "suite": 88.0},
        command=["qemu-system-x86_64", "-kernel", "bzImage"],
        environment={"FSTYP": "xfs"},
    )


@pytest.fixture
def berlin_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time with daylight saving (CET/CEST), restored afterwards."""
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def finished(store: RunStore, suite: str, now: float, outcome: Outcome | None = Outcome.PASSED) -> RunRecord:
    """Save a record of `suite` started at `now`, finished with `outcome` (None: still running)."""
    run_id, _ = store.new_run_dir(now)
    record = RunRecord(run_id, suite, "/k", "6.1.0", "direct", now, outcome=outcome)
    store.save(record)
    return record


def test_run_ids_sort_by_time(store: RunStore) -> None:
    later, _ = store.new_run_dir(T0 + 86400)
    earlier, _ = store.new_run_dir(T0)
    middle, _ = store.new_run_dir(T0 + 3600)

    assert sorted([later, earlier, middle]) == [earlier, middle, later]


def test_run_ids_in_one_second_are_unique_and_ordered(store: RunStore) -> None:
    ids = [store.new_run_dir(T0)[0] for _ in range(12)]

    assert len(set(ids)) == 12
    assert sorted(ids) == ids


def test_run_ids_keep_their_order_when_the_clocks_go_back(store: RunStore, berlin_time: None) -> None:
    # 2024-10-27: 02:45 CEST, then half an hour later it is 02:15 CET.
    before_change = 1729989900.0
    first, _ = store.new_run_dir(before_change)
    second, _ = store.new_run_dir(before_change + 1800)

    assert first < second


def test_each_run_gets_its_own_directory(store: RunStore, tmp_path: Path) -> None:
    run_id, path = store.new_run_dir(T0)

    assert path == tmp_path / "state/runs" / run_id
    assert path.is_dir()
    assert list(path.iterdir()) == []


def test_a_record_round_trips_through_run_json(store: RunStore, full_record: RunRecord) -> None:
    store.save(full_record)

    assert store.load(full_record.id) == full_record


def test_run_json_has_the_documented_fields(store: RunStore, full_record: RunRecord, tmp_path: Path) -> None:
    store.save(full_record)

    data = json.loads((tmp_path / "state/runs" / full_record.id / "run.json").read_text())

    assert data["outcome"] == "failed"
    assert (data["passed"], data["failed"], data["skipped"]) == (1, 3, 1)
    assert data["duration_s"] == 93.25
    assert data["regressions"] == ["generic/002"]
    assert data["tests"][2] == {
        "name": "generic/003",
        "status": "skip",
        "duration_s": None,
        "message": "not suitable for this filesystem type",
        "artefacts": [],
    }


def test_an_unfinished_record_round_trips(store: RunStore) -> None:
    record = finished(store, "command", T0, outcome=None)

    loaded = store.load(record.id)

    assert loaded == record
    assert loaded.outcome is None
    assert loaded.duration_s == 0.0


def test_saving_again_replaces_the_record(store: RunStore, full_record: RunRecord) -> None:
    store.save(replace(full_record, outcome=None, tests=[]))
    store.save(full_record)

    assert store.load(full_record.id) == full_record


def test_junit_xml_counts_and_messages(store: RunStore, full_record: RunRecord, tmp_path: Path) -> None:
    store.save(full_record)

    suite = ET.parse(tmp_path / "state/runs" / full_record.id / "junit.xml").getroot()

    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5",
        "2",
        "1",
        "1",
    )
    assert suite.get("time") == "93.250"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["generic/001", "generic/002", "generic/003", "xfs/004", "xfs/005"]
    assert list(cases["generic/001"]) == []
    failure = cases["generic/002"].find("failure")
    assert failure is not None
    assert failure.get("message") == "- output mismatch (see results/generic/002.out.bad)"
    assert failure.get("type") == "regression"
    assert failure.text == full_record.tests[1].message
    other_failure = cases["xfs/005"].find("failure")
    assert other_failure is not None
    assert other_failure.get("type") == "TestFail"
    error = cases["xfs/004"].find("error")
    assert error is not None
    assert error.get("message") == "_check_dmesg: something found in dmesg"
    skipped = cases["generic/003"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "not suitable for this filesystem type"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["outcome"] == "failed"
    assert properties["kernel_version"] == "6.1.0-test (me@host) #3 SMP"
    assert properties["regressions"] == "generic/002"


def test_junit_xml_escapes_what_the_kernel_prints(store: RunStore, tmp_path: Path) -> None:
    run_id, _ = store.new_run_dir(T0)
    message = 'expected <1> & got "2"\x1b[0m'
    record = RunRecord(
        run_id,
        "command",
        "/k",
        "6.1",
        "direct",
        T0,
        Outcome.FAILED,
        tests=[TestResult("cmd", TestStatus.FAIL, 1.0, message)],
    )
    store.save(record)

    suite = ET.parse(tmp_path / "state/runs" / run_id / "junit.xml").getroot()

    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith('expected <1> & got "2"')


def test_latest_is_the_newest_finished_run_of_the_suite(store: RunStore) -> None:
    first = finished(store, "command", T0)
    kunit = finished(store, "kunit", T0 + 60)
    finished(store, "command", T0 + 120, outcome=None)

    assert store.latest("command") == first
    assert store.latest() == kunit
    assert store.latest("xfstests") is None


def test_latest_respects_before(store: RunStore) -> None:
    first = finished(store, "command", T0)
    second = finished(store, "command", T0 + 60, outcome=Outcome.FAILED)
    third = finished(store, "command", T0 + 120, outcome=Outcome.CANCELLED)

    assert store.latest("command") == third
    assert store.latest("command", before=third.id) == second
    assert store.latest("command", before=second.id) == first
    assert store.latest("command", before=first.id) is None


def test_latest_of_an_empty_store_is_none(store: RunStore) -> None:
    assert store.latest() is None
    assert store.ids() == []


def test_ids_lists_only_runs_with_a_record(store: RunStore) -> None:
    record = finished(store, "command", T0)
    store.new_run_dir(T0 + 60)

    assert store.ids() == [record.id]


def test_loading_a_missing_run_raises_key_error(store: RunStore) -> None:
    with pytest.raises(KeyError):
        store.load("20240101-000000-001")


@pytest.mark.parametrize("run_id", ["", ".", "..", "../state", "a/b"])
def test_loading_a_path_raises_key_error(store: RunStore, run_id: str) -> None:
    with pytest.raises(KeyError):
        store.load(run_id)


def test_a_corrupt_run_json_is_a_missing_run(store: RunStore, tmp_path: Path) -> None:
    record = finished(store, "command", T0)
    (tmp_path / "state/runs" / record.id / "run.json").write_text('{"id": ')

    with pytest.raises(KeyError):
        store.load(record.id)
    assert store.latest() is None


def test_junit_xml_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    # A daemon started without a UTF-8 locale must still write what the XML declaration says.
    script = (
        "import sys; from pathlib import Path\n"
        "from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus\n"
        "from nixvmd.results.store import RunStore\n"
        "store = RunStore(Path(sys.argv[1]))\n"
        "run_id, _ = store.new_run_dir()\n"
        "store.save(RunRecord(run_id, 'command', '/k', '6.1', 'direct', 0.0, Outcome.FAILED,\n"
        "    tests=[TestResult('cmd', TestStatus.FAIL, 1.0, 'caf\\u00e9 \\u2192 \\u2717')]))\n"
        "print(run_id)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

    suite = ET.parse(tmp_path / "runs" / result.stdout.strip() / "junit.xml").getroot()

    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message") == "caf\u00e9 \u2192 \u2717"


def test_latest_finished_only_passes_over_cancelled_and_broken_runs(store: RunStore) -> None:
    compared = finished(store, "xfstests", 1000.0, Outcome.FAILED)
    finished(store, "xfstests", 1001.0, Outcome.CANCELLED)
    finished(store, "xfstests", 1002.0, Outcome.ERROR)
    latest = store.latest("xfstests", finished_only=True)
    assert latest is not None and latest.id == compared.id
    newest = store.latest("xfstests")
    assert newest is not None and newest.outcome is Outcome.ERROR


def test_no_room_for_the_record_says_so_and_leaves_no_temp_file(
    full_record: RunRecord, small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "full", 1 << 20)
    store = RunStore(fs.path)
    run_id, run_dir = store.new_run_dir(T0)
    record = replace(full_record, id=run_id)
    fs.fill(leave=0)
    with pytest.raises(StateSpaceError) as caught:
        store.save(record)
    assert str(caught.value).startswith(f"no space left on {fs.path} (tmpfs): writing the run record ")
    assert list(run_dir.iterdir()) == []
    fs.empty()
    store.save(record)
    assert sorted(p.name for p in run_dir.iterdir()) == ["junit.xml", "run.json"]
    assert store.load(run_id) == record


def test_no_inode_for_a_run_directory_says_so(small_tmpfs: Callable[..., Tmpfs], tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "full", 1 << 20, inodes=2)
    with pytest.raises(StateSpaceError, match=r"creating the run (store|directory) .* failed with"):
        RunStore(fs.path).new_run_dir(T0)


def _begin_in_child(state: Path, run_id: str) -> subprocess.Popen[str]:
    """Another process (a daemon) that begins run `run_id` and then waits to be killed."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from nixvmd.results.record import RunRecord\n"
        "from nixvmd.results.store import RunStore\n"
        "store = RunStore(Path(sys.argv[1]))\n"
        "store.begin(RunRecord(sys.argv[2], 'command', '/k', '6.1', 'direct', 1.0))\n"
        "print('begun', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(state), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "begun\n"
    return child


class TestInterruptedRuns:
    def test_a_run_is_on_disk_as_running_from_its_start(self, store: RunStore) -> None:
        run_id, run_dir = store.new_run_dir(T0)
        record = RunRecord(run_id, "command", "/k", "6.1", "direct", T0)
        store.begin(record)
        assert json.loads((run_dir / "run.json").read_text())["outcome"] == "running"
        assert store.latest() is None  # a running run is not the last run
        assert store.recover() == []  # ours, and alive
        record.outcome = Outcome.PASSED
        store.save(record)
        assert not (run_dir / ".live").exists()
        assert store.latest() is not None

    def test_the_run_of_a_killed_process_becomes_error_and_loses_its_scratch(self, store: RunStore) -> None:
        run_id, run_dir = store.new_run_dir(T0)
        child = _begin_in_child(store.root.parent, run_id)
        (run_dir / "initrd.cpio").write_bytes(b"\0" * 1024)
        disks_dir(run_dir).mkdir(parents=True)
        (disks_dir(run_dir) / "scratch.img").write_bytes(b"\0" * 1024)
        assert RunStore(store.root.parent).recover() == []  # its owner is alive: left alone
        assert store.load(run_id).outcome is Outcome.RUNNING
        child.kill()
        child.wait()
        assert RunStore(store.root.parent).recover() == [run_id]
        record = store.load(run_id)
        assert record.outcome is Outcome.ERROR
        assert record.reason == "nixvmd stopped during this run (killed?)"
        assert record.finished_at is not None
        assert not (run_dir / "initrd.cpio").exists()
        assert not scratch_dir(run_dir).exists()
        assert not (run_dir / ".live").exists()
        assert RunStore(store.root.parent).recover() == []  # once is enough

    def test_a_finished_runs_leftover_initrd_is_removed(self, store: RunStore) -> None:
        run_id, run_dir = store.new_run_dir(T0)
        store.save(RunRecord(run_id, "command", "/k", "6.1", "direct", T0, outcome=Outcome.PASSED))
        (run_dir / "initrd.cpio").write_bytes(b"\0" * 1024)
        store.recover()
        assert not (run_dir / "initrd.cpio").exists()
        assert store.load(run_id).outcome is Outcome.PASSED


def test_a_run_left_running_on_a_full_disk_is_recovered_once_there_is_room(
    small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "full", 1 << 20)
    store = RunStore(fs.path)
    run_id, run_dir = store.new_run_dir(T0)
    child = _begin_in_child(fs.path, run_id)
    child.kill()
    child.wait()
    fs.fill(leave=0)
    assert RunStore(fs.path).recover() == []  # no room to say so: tried again at the next start
    assert store.load(run_id).outcome is Outcome.RUNNING and (run_dir / ".live").exists()
    fs.empty()
    assert RunStore(fs.path).recover() == [run_id]
    assert store.load(run_id).outcome is Outcome.ERROR


DATA = Path(__file__).parents[1] / "suite" / "data"


def junit_cases(store: RunStore, record: RunRecord) -> list[ET.Element]:
    store.save(record)
    return list(ET.parse(store.path(record.id) / "junit.xml").getroot().iter("testcase"))


def test_junit_groups_kunit_cases_by_suite_with_the_assertion_as_message(store: RunStore) -> None:
    run_id, run_dir = store.new_run_dir(T0)
    cases = junit_cases(store, kunit_record(run_dir, run_id=run_id))

    by_name = {(case.get("classname"), case.get("name")): case for case in cases}
    simple = by_name[("kunit.example", "example_simple_test")]
    failure = simple.find("failure")
    assert failure is not None
    assert failure.get("message") == SIMPLE_HEADLINE
    assert failure.text is not None and "example_simple_test: initializing" in failure.text
    assert ("kunit.string-stream-test", "string_stream_test_get_string") in by_name
    assert "nixvmd.kunit" not in {case.get("classname") for case in cases}
    # Without printk times nothing measured a KUnit case: no time rather than a made-up 0.000.
    assert all(case.get("time") is None for case in cases)


# Lines of a real 6.1 KUnit console (kunit_6_1_failing_console.log, plans cut to the cases
# kept), stamped as printk would. A case runs after the line before it at its level: the
# suite's plan line for the first, the previous result after that.
TIMED_KUNIT = """\
[    1.099000] KTAP version 1
[    1.099001] 1..2
[    1.100000]     KTAP version 1
[    1.100001]     # Subtest: example
[    1.100002]     1..2
[    1.101000]     # example_simple_test: initializing
[    1.103900]     # example_simple_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29
[    1.103901]     Expected 1 + 1 == 3, but
[    1.103902]         1 + 1 == 2
[    1.104002]     not ok 1 example_simple_test
[    1.110000]     # example_skip_test: initializing
[    1.227000]     # example_skip_test: You should not see a line below.
[    1.227002]     ok 2 example_skip_test # SKIP this test should be skipped
[    1.227100] # example: pass:0 fail:1 skip:1 total:2
[    1.227101] # Totals: pass:0 fail:1 skip:1 total:2
[    1.227200] not ok 1 example
[    1.227300]     KTAP version 1
[    1.227301]     # Subtest: kunit-try-catch-test
[    1.227302]     1..2
    ok 1 kunit_test_try_catch_successful_try_no_catch
[    1.240000]     ok 2 kunit_test_try_catch_unsuccessful_try_does_catch
[    1.240100] # kunit-try-catch-test: pass:2 fail:0 skip:0 total:2
[    1.240101] # Totals: pass:2 fail:0 skip:0 total:2
[    1.240200] ok 2 kunit-try-catch-test
"""


def test_junit_times_kunit_cases_with_the_interval_the_printk_times_give(store: RunStore) -> None:
    run_id, run_dir = store.new_run_dir(T0)

    cases = junit_cases(store, kunit_record(run_dir, TIMED_KUNIT, run_id))

    assert [(case.get("classname"), case.get("name"), case.get("time")) for case in cases] == [
        # 1.104002 - 1.100002 (the plan line; not 1.101000, the case's own first line) = 0.004
        ("kunit.example", "example_simple_test", "0.004"),
        # 1.227002 - 1.104002 (the previous result; not 1.110000) = 0.123
        ("kunit.example", "example_skip_test", "0.123"),
        # the result line lost its printk time: no end, so no time (not a made-up 0.000)
        ("kunit.kunit-try-catch-test", "kunit_test_try_catch_successful_try_no_catch", None),
        # it started after that untimed line: no start, so no time either
        ("kunit.kunit-try-catch-test", "kunit_test_try_catch_unsuccessful_try_does_catch", None),
    ]


def test_junit_groups_fstests_by_section_with_check_s_runtimes(store: RunStore) -> None:
    run_id, _ = store.new_run_dir(T0)
    tests = to_test_results(parse_check_output((DATA / "fstests_sections.out").read_text()).tests)
    record = RunRecord(run_id, "xfstests", "/k", "6.1.0", "direct", T0, Outcome.FAILED, tests=tests)

    cases = junit_cases(store, record)

    assert [(case.get("classname"), case.get("name"), case.get("time")) for case in cases] == [
        ("xfstests.xfs_4k", "generic/001", "4.000"),
        ("xfstests.xfs_4k", "generic/002", None),  # check prints no runtime for a failure
        ("xfstests.ext4", "generic/001", "3.000"),
        ("xfstests.ext4", "generic/002", "1.000"),
    ]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "output mismatch at line 2: +unexpected"


def test_a_test_the_guest_crashed_or_hung_in_is_a_junit_error_of_its_kind_and_counts_as_failed(
    store: RunStore, tmp_path: Path
) -> None:
    record = RunRecord("20260101-000000-001", "xfstests", "/k", "6.1", "direct", 0.0, outcome=Outcome.CRASHED)
    record.tests = [
        TestResult("generic/001", TestStatus.PASS, 1.0),
        TestResult("crash/001", TestStatus.CRASHED, None, "kernel panic: sysrq triggered crash\nconsole ..."),
        TestResult("hang/001", TestStatus.TIMEOUT, None, "test hang/001 hung: still running after 20s"),
        TestResult("generic/002", TestStatus.SKIP, None, "not run: suite.resume_limit (1) reached"),
    ]
    (tmp_path / "state/runs" / record.id).mkdir(parents=True)
    store.save(record)
    suite = ET.parse(tmp_path / "state/runs" / record.id / "junit.xml").getroot()
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "2", "1")
    errors = {case.get("name"): case.find("error") for case in suite.iter("testcase")}
    crashed, hung = errors["crash/001"], errors["hang/001"]
    assert crashed is not None and hung is not None
    assert (crashed.get("type"), crashed.get("message")) == ("crashed", "kernel panic: sysrq triggered crash")
    assert hung.get("type") == "timeout"
    summary = record.summary()
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (1, 2, 1)
    assert [f["name"] for f in summary["failures"]] == ["crash/001", "hang/001"]
    assert store.load(record.id).tests == record.tests


def test_the_console_of_a_run_with_shards_names_each_shards_log(store: RunStore) -> None:
    run_id, run_dir = store.new_run_dir()
    store.save(RunRecord(run_id, "xfstests", "/k", "6.1", "direct", 0.0, outcome=Outcome.PASSED))
    for k in (0, 1):
        (run_dir / "shards" / str(k)).mkdir(parents=True)
        (run_dir / "shards" / str(k) / "console.log").write_text("boot\n")

    with pytest.raises(NoSuchRun) as caught:
        run_console(store, run_id)

    assert str(caught.value) == (
        f"run {run_id} ran in 2 shards, each with its own console log: "
        f"{run_dir}/shards/0/console.log, {run_dir}/shards/1/console.log"
    )
