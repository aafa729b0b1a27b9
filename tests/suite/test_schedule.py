"""Regressions first: the order a run's tests get, and how each suite kind applies it."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.results.record import RunRecord, TestResult, TestStatus
from nixvmd.suite.registry import make_suite, run_first, with_tests
from nixvmd.suite.schedule import early_tests, first
from nixvmd.suite.xfstests.suite import check_args, expected_total, planned_tests


def config_of(tmp_path: Path, text: str) -> Config:
    return parse_config(f'[daemon]\nstate_dir = "{tmp_path}"\n{text}', name="test.toml", base=tmp_path)


def xfstests(tmp_path: Path, args: str) -> Config:
    return config_of(tmp_path, f'[suite]\nkind = "xfstests"\n[xfstests]\ndir = "{tmp_path}"\nargs = {args}\n')


def check_command(config: Config) -> list[str]:
    env = dict(make_suite(config).job().env)
    return shlex.split(env["NIXVMD_XFS_ARGS"])


def test_first_puts_the_early_tests_first_and_keeps_each_groups_order() -> None:
    tests = ["a", "b", "c", "d", "e"]
    assert first(tests, {"d", "b"}) == ["b", "d", "a", "c", "e"]
    assert first(tests, ()) == tests
    assert first(tests, {"x"}) == tests  # an early test the run does not have adds nothing
    assert first([], {"a"}) == []


def _run(run_id: str, *tests: tuple[str, TestStatus], fixes: tuple[str, ...] = ()) -> RunRecord:
    record = RunRecord(run_id, "xfstests", "/k", "6.1.0", "direct", 0.0)
    record.tests = [TestResult(name, status) for name, status in tests]
    record.fixes = list(fixes)
    return record


def test_early_are_the_previous_failures_then_recent_fixes_newest_first_without_sections() -> None:
    previous = [
        TestResult("generic/001", TestStatus.PASS),
        TestResult("xfs_crc:generic/475", TestStatus.FAIL),  # a section's test: check names it bare
        TestResult("generic/013", TestStatus.ERROR),  # crashed the guest or hung
        TestResult("generic/003", TestStatus.SKIP),
    ]
    recent = [_run("r3", fixes=("generic/100",)), _run("r2", fixes=("generic/013", "generic/200"))]
    assert early_tests(previous, recent) == ["generic/475", "generic/013", "generic/100", "generic/200"]
    assert early_tests(None, []) == []


def test_xfstests_list_runs_the_early_tests_first_in_exact_order_the_rest_in_checks_order(
    tmp_path: Path,
) -> None:
    config = xfstests(tmp_path, '["generic/005", "generic/001", "generic/002", "generic/001"]')
    ordered, tests = run_first(config, (), ["generic/002", "generic/999"])
    assert tests == ()
    # check sorts a list (sort -n | uniq) unless told --exact-order, which must come before the tests.
    assert check_command(ordered) == [
        "-R", "xunit", "--exact-order", "generic/002", "generic/001", "generic/005",
    ]  # fmt: skip
    assert planned_tests(ordered.xfstests) == ["generic/002", "generic/001", "generic/005"]
    assert expected_total(ordered.xfstests) == 3


def test_xfstests_order_is_left_to_check_when_nothing_moves_or_groups_choose(tmp_path: Path) -> None:
    listed = xfstests(tmp_path, '["generic/002", "generic/001"]')
    assert run_first(listed, (), ["generic/001"]) == (listed, ())  # check's sort puts it first anyway
    assert run_first(listed, (), []) == (listed, ())
    grouped = xfstests(tmp_path, '["-g", "quick"]')
    assert run_first(grouped, (), ["generic/002"]) == (grouped, ())


def test_a_users_exact_order_is_kept_for_the_rest(tmp_path: Path) -> None:
    config = xfstests(tmp_path, '["--exact-order", "generic/009", "generic/001", "generic/005"]')
    ordered, _ = run_first(config, (), ["generic/005"])
    assert ordered.xfstests.args == ("--exact-order", "generic/005", "generic/009", "generic/001")


def test_a_narrowed_xfstests_run_is_ordered_too(tmp_path: Path) -> None:
    config = xfstests(tmp_path, "[]")
    tests = ("generic/001", "generic/002")
    ordered, kept = run_first(with_tests(config, tests), tests, ["generic/002"])
    assert kept == tests
    assert check_args(ordered.xfstests)[-3:] == ["--exact-order", "generic/002", "generic/001"]


def test_kselftest_gets_its_tests_in_order_kunit_and_command_keep_theirs(tmp_path: Path) -> None:
    kselftest = config_of(tmp_path, '[suite]\nkind = "kselftest"\ncommand = "run_kselftest.sh"\n')
    config, tests = run_first(kselftest, ("net:a", "net:b", "net:c"), ["net:c"])
    assert tests == ("net:c", "net:a", "net:b")
    assert dict(make_suite(config, tests).job().env)["NIXVMD_TESTS"] == "net:c net:a net:b"
    for text in ('[suite]\nkind = "command"\ncommand = "t"\n', '[suite]\nkind = "kunit"\n'):
        config = config_of(tmp_path, text)
        assert run_first(config, ("b", "a"), ["a"]) == (config, ("b", "a"))


@pytest.mark.parametrize("args", ['["generic/001"]', '["-g", "auto", "-x", "dangerous"]'])
def test_without_early_tests_the_config_is_unchanged(tmp_path: Path, args: str) -> None:
    config = xfstests(tmp_path, args)
    assert run_first(config, (), []) == (config, ())


def test_groups_are_expanded_from_the_tree_on_the_host_and_ordered_too(tmp_path: Path) -> None:
    tree = Path(__file__).parents[1] / "fixtures" / "fstests"  # tests/generic/group.list: quick is 001-003
    config = config_of(
        tmp_path, f'[suite]\nkind = "xfstests"\n[xfstests]\ndir = "{tree}"\nargs = ["-g", "quick"]\n'
    )
    ordered, _ = run_first(config, (), ["generic/003"])
    assert check_command(ordered)[-4:] == ["--exact-order", "generic/003", "generic/001", "generic/002"]
    wrong = config_of(
        tmp_path, f'[suite]\nkind = "xfstests"\n[xfstests]\ndir = "{tree}"\nargs = ["-g", "nosuch"]\n'
    )
    assert run_first(wrong, (), ["generic/003"]) == (wrong, ())  # check says what is wrong, in the run
