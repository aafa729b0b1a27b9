"""check's own test selection, expanded against the stand-in fstests tree's real group.list files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nixvmd.errors import ConfigError
from nixvmd.suite.xfstests.select import named_tests, run_options, select_tests

TREE = Path(__file__).parents[1] / "fixtures" / "fstests"
BURN = [f"burn/{i:03d}" for i in range(1, 31)]


def test_explicit_tests_are_sorted_as_check_sorts_them_and_each_kept_once() -> None:
    args = ["generic/002", "burn/010", "generic/001", "tests/generic/002"]

    assert select_tests(TREE, args) == ["burn/010", "generic/001", "generic/002"]


def test_exact_order_keeps_the_order_given() -> None:
    args = ["--exact-order", "generic/002", "burn/010", "generic/001", "generic/002"]

    assert select_tests(TREE, args) == ["generic/002", "burn/010", "generic/001"]


def test_a_test_its_group_list_does_not_name_is_ignored_as_check_ignores_it() -> None:
    assert select_tests(TREE, ["generic/001", "generic/999", "nosuch/001"]) == ["generic/001"]


def test_groups_come_from_generic_and_the_file_systems_directories() -> None:
    assert select_tests(TREE, ["-g", "quick"]) == ["generic/001", "generic/002", "generic/003"]
    # burn/ is not a file system's directory: its `auto` tests count only for FSTYP=burn.
    assert select_tests(TREE, ["-g", "auto"], ["xfs"]) == [f"generic/00{i}" for i in range(1, 5)]
    assert select_tests(TREE, ["-g", "auto"], ["burn"]) == [*BURN, *(f"generic/00{i}" for i in range(1, 5))]


def test_no_test_and_no_group_is_the_auto_group() -> None:
    assert select_tests(TREE, []) == select_tests(TREE, ["-g", "auto"])
    assert select_tests(TREE, ["-R", "xunit", "-s", "xfs"]) == select_tests(TREE, ["-g", "auto"])


def test_a_dir_group_and_comma_lists_of_groups() -> None:
    assert select_tests(TREE, ["-g", "burn/cpu"]) == BURN
    assert select_tests(TREE, ["-g", "hang/hang,crash/crash"]) == ["crash/001", "hang/001"]
    assert select_tests(TREE, ["-g", "burn/cpu", "generic/004"]) == [*BURN, "generic/004"]


def test_excluded_groups_are_taken_out() -> None:
    args = ["-g", "auto", "-x", "quick"]

    assert select_tests(TREE, args) == ["generic/004"]
    assert select_tests(TREE, ["-g", "burn/cpu", "-x", "burn/cpu,quick"]) == []
    # An -x group with no test is ignored, as check ignores it.
    quick = ["generic/001", "generic/002", "generic/003"]
    assert select_tests(TREE, ["-g", "quick", "-x", "nosuch"]) == quick


def test_e_and_capital_e_expunge_tests(tmp_path: Path) -> None:
    exclude = tmp_path / "exclude"
    exclude.write_text("# known bad\ngeneric/003 # hangs on this box\ngeneric/00\n")

    args = ["-g", "auto", "-e", "generic/001,generic/004", "-E", str(exclude)]

    assert select_tests(TREE, args) == ["generic/002"]
    assert select_tests(TREE, ["-g", "quick", "-E", str(tmp_path / "missing")]) == [
        "generic/001",
        "generic/002",
        "generic/003",
    ]


def test_a_glob_matches_the_listed_tests() -> None:
    assert select_tests(TREE, ["burn/00?", "generic/00[34]"]) == [
        *(f"burn/00{i}" for i in range(1, 10)),
        "generic/003",
        "generic/004",
    ]


def test_all_is_every_test_of_the_group_directories() -> None:
    assert select_tests(TREE, ["-g", "all"], ["ext3"]) == [f"generic/00{i}" for i in range(1, 5)]


def test_a_group_with_no_test_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match='group "nosuch" has no test in') as caught:
        select_tests(TREE, ["-g", "nosuch"])
    assert "\n" not in str(caught.value)


def test_an_option_after_a_test_is_refused_as_check_refuses_it() -> None:
    with pytest.raises(ConfigError, match="options before the tests, not -x after them"):
        select_tests(TREE, ["generic/001", "-x", "quick"])


def test_an_option_it_does_not_know_is_named() -> None:
    with pytest.raises(ConfigError, match="check option -overlay is not one nixvmd can expand"):
        select_tests(TREE, ["-overlay", "-g", "quick"])
    with pytest.raises(ConfigError, match="check option -g \\(without its value\\)"):
        select_tests(TREE, ["-g"])


def test_a_tree_without_group_lists_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no tests/\*/group.list: point xfstests.dir at a built"):
        select_tests(tmp_path, ["-g", "quick"])
    with pytest.raises(ConfigError, match=r"missing does not exist on this host: point it at a built"):
        select_tests(tmp_path / "missing", ["-g", "quick"])


def test_named_tests_and_the_options_a_narrowed_run_keeps() -> None:
    assert named_tests(["-T", "--exact-order", "generic/002", "generic/001", "generic/002"]) == [
        "generic/002",
        "generic/001",
    ]
    assert named_tests(["-g", "quick"]) is None
    assert named_tests(["generic/001", "-e", "generic/001"]) is None
    assert named_tests(["burn/*"]) is None
    args = ["-T", "-g", "quick", "-s", "xfs", "-r", "-R", "xunit", "--exact-order", "-x", "a"]
    assert run_options(args) == [
        "-T",
        "-s",
        "xfs",
        "-R",
        "xunit",
    ]


CASES = [
    [],
    ["-g", "quick"],
    ["-g", "auto", "-x", "quick"],
    ["-g", "burn/cpu", "-x", "burn/quick", "-e", "burn/004,burn/010"],
    ["--exact-order", "generic/003", "burn/002", "generic/001", "hang/001"],
    ["-g", "all"],
    ["burn/0[12]?", "tests/crash/001", "generic/005"],
    ["-g", "hang/hang,crash/crash", "-g", "quick", "-E", "EXCLUDE"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) or "none" for a in CASES])
def test_the_stand_in_check_shows_the_same_tests(args: list[str], tmp_path: Path) -> None:
    """The stand-in check (bash, run on the host with -n: check's "show me") and select_tests
    are two readings of check's rules; they must agree on every case."""
    tree = tmp_path / "fstests"
    shutil.copytree(TREE, tree)
    (tree / "EXCLUDE").write_text("generic/002\n")
    args = [str(tree / "EXCLUDE") if a == "EXCLUDE" else a for a in args]
    config = tmp_path / "local.config"
    config.write_text('[xfs]\nFSTYP="xfs"\n\n[old]\nFSTYP="ext3"\n')
    env = {**os.environ, "HOST_OPTIONS": str(config), "STANDIN_LOG": str(tmp_path / "log"), "LC_ALL": "C"}

    shown = subprocess.run(
        [str(tree / "check"), "-n", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=60
    )

    assert shown.returncode == 0, shown.stdout + shown.stderr
    sections = re.split(r"^SECTION +-- \S+\n", shown.stdout, flags=re.M)[1:]
    assert len(sections) == 2
    for section, fstyp in zip(sections, ("xfs", "ext3"), strict=True):
        ran = [line for line in section.splitlines() if "[expunged]" not in line]
        assert ran == select_tests(tree, args, [fstyp])
