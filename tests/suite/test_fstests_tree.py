"""The fstests tree as an input: which tree, which files matter, what a change concerns, its digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config, OnChange
from nixvmd.suite.xfstests.tree import (
    TreeChange,
    classify,
    concerned_test,
    fstests_host_tree,
    matters,
    tree_digest,
    watched_tree,
)


def config(extra: str = "", *, share: bool = True, kind: str = "xfstests") -> Config:
    toml = f"""
[image]
share_host_root = {"true" if share else "false"}
[suite]
kind = "{kind}"
[xfstests]
dir = "/src/xfstests-dev"
{extra}
"""
    return parse_config(toml, name="nixvmd.toml", base=Path("/project"))


def test_the_tree_is_xfstests_dir_when_the_guest_sees_the_host_root() -> None:
    assert fstests_host_tree(config()) == Path("/src/xfstests-dev")
    assert watched_tree(config()) == Path("/src/xfstests-dev")


@pytest.mark.parametrize(
    "other",
    [config(share=False), config(kind="kunit"), config('on_change = "off"')],
    ids=["no shared root", "another suite", "off"],
)
def test_no_tree_is_watched_without_a_shared_root_an_fstests_suite_or_with_off(other: Config) -> None:
    assert watched_tree(other) is None


@pytest.mark.parametrize(
    ("path", "test"),
    [
        ("tests/generic/001", "generic/001"),
        ("tests/generic/001.out", "generic/001"),
        ("tests/xfs/123.cfg", "xfs/123"),
        ("tests/xfs/123.out.64k", "xfs/123"),
        ("tests/btrfs/300.out.zoned.v2", "btrfs/300"),
        ("tests/generic/group.list", None),
        ("tests/generic/Makefile", None),
        ("common/rc", None),
        ("tests/generic", None),
        ("src/aio-dio-regress/aio-dio-test", None),
    ],
)
def test_a_tests_files_concern_that_test(path: str, test: str | None) -> None:
    assert concerned_test(path) == test


@pytest.mark.parametrize(
    "path",
    ["check", "common/rc", "tests/xfs/123.out", "src/fssum", "ltp/fsstress", "tests/generic/group.list"],
)
def test_what_a_run_reads_matters(path: str) -> None:
    assert matters(path)


@pytest.mark.parametrize(
    "path",
    [
        "src/fssum.o",
        "src/.fssum.d",
        "src/fssum.d",
        "ltp/.dep",
        "tests/xfs/.123.out.swp",
        "tests/xfs/123.out~",
        "tests/xfs/4913",
        "tests/xfs/group.list.new",
        "tests/xfs/.#123",
        "common/#rc#",
        ".git/index",
        "src/.libs/x",
        "README",
        "doc/requirements",
        "lib/libtest.la",
        "tests",
    ],
)
def test_objects_editor_files_hidden_files_and_the_rest_of_the_tree_do_not(path: str) -> None:
    assert not matters(path)


def test_a_change_of_tests_files_only_concerns_those_tests_each_once() -> None:
    change = classify(["tests/generic/001.out", "tests/xfs/123", "tests/generic/001"], OnChange.CHANGED)

    assert change.tests == ("generic/001", "xfs/123")
    assert change.reason == (
        "tests/generic/001.out, tests/xfs/123, tests/generic/001 changed → generic/001, xfs/123"
    )


def test_one_test_file_names_it_in_the_reason() -> None:
    assert classify(["tests/generic/750.out"], OnChange.CHANGED).reason == (
        "tests/generic/750.out changed → generic/750"
    )


@pytest.mark.parametrize(
    "everything", ["common/rc", "check", "src/fssum", "ltp/fsstress", "tests/generic/group.list"]
)
def test_fstests_itself_concerns_every_test_and_leads_the_reason(everything: str) -> None:
    change = classify(["tests/generic/001.out", everything], OnChange.CHANGED)

    assert change.tests is None
    assert change.reason == f"{everything}, tests/generic/001.out changed"


def test_on_change_all_runs_everything_for_a_test_edit() -> None:
    assert classify(["tests/generic/001.out"], OnChange.ALL).tests is None


def test_a_long_burst_names_the_first_paths_and_counts_the_rest() -> None:
    change = classify([f"src/t_{n}" for n in range(200)], OnChange.CHANGED)

    assert change.reason == "src/t_0, src/t_1, src/t_2 and 197 more changed"


def test_two_settled_changes_merge_into_what_both_concern() -> None:
    one = classify(["tests/generic/001.out"], OnChange.CHANGED)
    two = classify(["tests/xfs/123"], OnChange.CHANGED)

    assert (one | two).tests == ("generic/001", "xfs/123")
    assert (one | classify(["common/rc"], OnChange.CHANGED)) == TreeChange(
        ("common/rc", "tests/generic/001.out"), None
    )


def test_the_digest_follows_what_matters_and_ignores_the_rest(tmp_path: Path) -> None:
    (tmp_path / "tests" / "generic").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "check").write_text("#!/bin/bash\n")
    golden = tmp_path / "tests" / "generic" / "001.out"
    golden.write_text("QA output created by 001\n")
    before = tree_digest(tmp_path)

    (tmp_path / "src" / "fssum.o").write_bytes(b"object")
    (tmp_path / "tests" / "generic" / ".001.out.swp").write_bytes(b"swap")
    assert tree_digest(tmp_path) == before

    golden.write_text("QA output created by 001\nSilence is golden\n")
    assert tree_digest(tmp_path) != before


def test_the_digest_sees_a_rewrite_of_the_same_size(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    rc = tmp_path / "common" / "rc"
    rc.write_text("a\n")
    os.utime(rc, ns=(1, 1))
    before = tree_digest(tmp_path)
    rc.write_text("b\n")
    os.utime(rc, ns=(2, 2))

    assert tree_digest(tmp_path) != before
