"""A run split into shards: which kinds split, on which durations, and what a shard's config runs."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.registry import make_suite, split_tests, with_tests
from nixvmd.suite.xfstests.suite import check_args, expected_total

TREE = Path(__file__).parents[1] / "fixtures" / "fstests"
SECTIONS = """
[[xfstests.sections]]
name = "crc"
fstyp = "xfs"
mkfs_options = "-m crc=1"

[[xfstests.sections]]
name = "nocrc"
fstyp = "xfs"
mkfs_options = "-m crc=0"
"""


def _config(state: Path, suite: str, extra: str = "") -> Config:
    text = f'[kernel]\ntree = "/k"\n[daemon]\nstate_dir = "{state}"\n[suite]\n{suite}\n{extra}'
    return parse_config(text, name="nixvmd.toml", base=state)


def _xfstests(state: Path, tree: Path, args: str) -> Config:
    return _config(state, 'kind = "xfstests"', f'[xfstests]\ndir = "{tree}"\nargs = {args}\n{SECTIONS}')


def _check_time(state: Path, times: dict[str, float]) -> None:
    (state / "xfstests").mkdir(parents=True)
    (state / "xfstests" / "check.time").write_text("".join(f"{t} {s:g}\n" for t, s in times.items()))


def test_xfstests_groups_and_exclusions_are_expanded_and_split_on_check_time(tmp_path: Path) -> None:
    _check_time(tmp_path, {"burn/001": 40, "burn/002": 30, "burn/003": 20, "burn/004": 10, "burn/005": 10})
    args = '["-g", "burn/cpu", "-x", "quick", "-e", "burn/006,burn/007,burn/008"]'
    config = _xfstests(tmp_path, TREE, args)

    shards = split_tests(config, 2)

    # burn/009..030 know no duration: each counts the median (20).
    expected = [f"burn/{i:03d}" for i in range(1, 31) if i not in (6, 7, 8)]
    assert sorted(t for shard in shards for t in shard) == expected
    assert len(shards) == 2
    known = {"burn/001": 40, "burn/002": 30, "burn/003": 20, "burn/004": 10, "burn/005": 10}
    loads = sorted(sum(known.get(t, 20) for t in shard) for shard in shards)
    assert loads == [270, 280]
    assert "burn/001" in shards[0] and "burn/002" in shards[1]
    for shard in shards:
        assert list(shard) == sorted(shard)  # each in check's order


def test_the_previous_runs_durations_win_over_check_time_and_sections_count_once(tmp_path: Path) -> None:
    _check_time(tmp_path, {"generic/001": 1, "generic/002": 1, "generic/003": 1, "generic/004": 1})
    previous = [
        TestResult("crc:generic/004", TestStatus.PASS, 50.0, collection="crc"),
        TestResult("nocrc:generic/004", TestStatus.PASS, 60.0, collection="nocrc"),
        TestResult("crc:generic/001", TestStatus.FAIL, 2.0, collection="crc"),
    ]
    config = _xfstests(tmp_path, TREE, '["-g", "auto"]')

    shards = split_tests(config, 2, previous)

    assert ("generic/004",) in shards
    assert ("generic/001", "generic/002", "generic/003") in shards


def test_a_shards_config_runs_its_tests_in_order_under_every_section(tmp_path: Path) -> None:
    config = _xfstests(tmp_path, TREE, '["-T", "-g", "auto"]')
    shard = split_tests(config, 3)[0]

    narrowed = with_tests(config, shard)
    job = dict(make_suite(narrowed, shard).job().env)

    assert check_args(narrowed.xfstests) == ["-R", "xunit", "-T", "--exact-order", *shard]
    assert shlex.split(job["NIXVMD_XFS_ARGS"]) == check_args(narrowed.xfstests)
    assert "[crc]" in job["NIXVMD_XFS_LOCAL_CONFIG"] and "[nocrc]" in job["NIXVMD_XFS_LOCAL_CONFIG"]
    assert narrowed.xfstests.sections == config.xfstests.sections
    assert expected_total(narrowed.xfstests) == len(shard) * 2


def test_the_user_args_are_not_given_exact_order(tmp_path: Path) -> None:
    config = _xfstests(tmp_path, TREE, '["generic/002", "generic/001"]')

    assert check_args(config.xfstests) == ["-R", "xunit", "generic/002", "generic/001"]


def test_an_fstests_tree_not_readable_here_is_not_split(tmp_path: Path) -> None:
    config = _xfstests(tmp_path, tmp_path / "guest-only", '["-g", "quick"]')

    assert split_tests(config, 2) == []


def test_a_tree_without_group_lists_is_not_guessed_at(tmp_path: Path) -> None:
    tree = tmp_path / "fstests"
    shutil.copytree(TREE, tree)
    for group_list in tree.glob("tests/*/group.list"):
        group_list.unlink()
    config = _xfstests(tmp_path, tree, '["-g", "quick"]')

    with pytest.raises(ConfigError, match=r"has no tests/\*/group.list"):
        split_tests(config, 2)


def test_kselftest_splits_the_previous_tests_when_its_command_takes_them(tmp_path: Path) -> None:
    previous = [
        TestResult("net.a", TestStatus.PASS, 30.0),
        TestResult("net.b", TestStatus.PASS, 10.0),
        TestResult("net.c", TestStatus.FAIL, 20.0),
    ]
    takes = _config(tmp_path, 'kind = "kselftest"\ncommand = "run_kselftest.sh $NIXVMD_TESTS"')
    ignores = _config(tmp_path, 'kind = "kselftest"\ncommand = "run_kselftest.sh -c net"')

    assert split_tests(takes, 2, previous) == [("net.a",), ("net.b", "net.c")]
    assert split_tests(takes, 2) == []
    assert split_tests(ignores, 2, previous) == []


def test_kunit_and_command_runs_stay_in_one_vm(tmp_path: Path) -> None:
    previous = [TestResult("a", TestStatus.PASS, 1.0), TestResult("b", TestStatus.PASS, 1.0)]

    assert split_tests(_config(tmp_path, 'kind = "kunit"'), 2, previous) == []
    assert split_tests(_config(tmp_path, 'kind = "command"\ncommand = "t $NIXVMD_TESTS"'), 2, previous) == []
