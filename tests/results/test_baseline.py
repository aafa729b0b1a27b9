"""The known-failures file: parsing, kernel conditions, errors, accepting new failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nixvmd.errors import NixvmdError
from nixvmd.results.baseline import (
    Baseline,
    BaselineError,
    KernelVersion,
    remove_from_baseline,
    unwritable,
    write_baseline,
)

KNOWN = """\
# xfs on the dev box
generic/475  # flaky on 6.1  [< 6.6]
generic/476 [>= 6.1, < 6.6]   # window of breakage
generic/477 [>= 6.1] [!= 6.3]
xfs/123 [== 6.8.0-rc3]
xfs/124 [= 6.8]

xfs_4k:generic/001   # only in this section
kunit_suite.*        # the whole suite
"selftests: net: reuseport_bpf"  # kselftest names have spaces
generic/500  # see [bug 1234] for details
"""


def known() -> Baseline:
    return Baseline.parse(KNOWN, "known-failures.txt")


def test_entries_keep_test_conditions_comment_and_line() -> None:
    entry = known().entries[0]

    assert (entry.test, [str(c) for c in entry.conditions], entry.comment, entry.line) == (
        "generic/475",
        ["< 6.6"],
        "flaky on 6.1",
        2,
    )
    assert [str(c) for c in known().entries[1].conditions] == [">= 6.1", "< 6.6"]
    assert known().entries[-1].comment == "see [bug 1234] for details"
    assert len(known().entries) == 9


@pytest.mark.parametrize(
    ("test", "kernel", "expected"),
    [
        ("generic/475", "6.1.0-56-cloud-amd64", True),
        ("generic/475", "6.6.0-rc1", True),
        ("generic/475", "6.6.0", False),
        ("generic/475", "6.10.2", False),
        ("generic/476", "6.1.0", True),
        ("generic/476", "6.0.19", False),
        ("generic/477", "6.3.5", False),
        ("generic/477", "6.4.0", True),
        ("xfs/123", "6.8.0-rc3-00012-gabcdef", True),
        ("xfs/123", "6.8.0", False),
        ("xfs/124", "6.8.0-rc1", True),
        ("xfs/124", "6.8.12", True),
        ("xfs/124", "6.9.0", False),
        ("generic/999", "6.1.0", False),
    ],
)
def test_conditions_on_the_kernel_version(test: str, kernel: str, expected: bool) -> None:
    assert known().applies(test, kernel) is expected


def test_an_entry_without_section_covers_every_section() -> None:
    assert known().applies("ext4:generic/475", "6.1.0")
    assert known().applies("xfs_4k:generic/001", "6.1.0")
    assert not known().applies("ext4:generic/001", "6.1.0")
    assert not known().applies("generic/001", "6.1.0")


def test_globs_and_names_with_spaces() -> None:
    assert known().applies("kunit_suite.case_one", "6.1.0")
    assert not known().applies("other_suite.case_one", "6.1.0")
    assert known().applies("selftests: net: reuseport_bpf", "6.1.0")


def test_an_unreadable_kernel_version_only_keeps_unconditional_entries() -> None:
    assert not known().applies("generic/475", "unknown")
    assert known().applies("generic/500", "")


def test_entry_for_gives_the_comment_to_show() -> None:
    entry = known().entry_for("generic/476", "6.2.0")

    assert entry is not None and entry.comment == "window of breakage"


def test_kernel_versions_order_rc_before_release_and_ignore_distribution_suffixes() -> None:
    def order(text: str) -> tuple[int, ...]:
        version = KernelVersion.parse(text)
        assert version is not None
        return version.order

    assert order("6.8.0-rc3") < order("6.8.0") < order("6.8.1") < order("6.10")
    assert order("6.1.0-56-cloud-amd64") == order("6.1.0") == order("6.1")
    assert order("6.9.0-rc1+") == order("6.9-rc1")
    assert KernelVersion.parse("Linux") is None


def test_bad_lines_are_all_reported_with_file_and_line() -> None:
    text = (
        "generic/001 [>= six]\ngeneric/002 flaky [< 6.1]\n[< 6.1]\ngeneric/003 # [<= x]\n"
        'generic/004 [< 6.1\n"selftests: net: x  # no closing quote\n'
    )

    with pytest.raises(BaselineError) as caught:
        Baseline.parse(text, "kf.txt")

    problems = caught.value.problems
    assert [p.split(":")[0:2] for p in problems] == [["kf.txt", str(n)] for n in range(1, 7)]
    assert "bad kernel condition '>= six'" in problems[0]
    assert "unexpected 'flaky [< 6.1]' after the test name" in problems[1]
    assert isinstance(caught.value, NixvmdError)


def test_a_missing_file_is_an_empty_baseline(tmp_path: Path) -> None:
    baseline = Baseline.load(tmp_path / "none.txt")

    assert baseline.entries == ()
    assert not baseline.applies("generic/001", "6.1.0")


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot read the known-failures file"):
        Baseline.load(tmp_path)


def test_accepting_failures_appends_new_ones_and_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "known-failures.txt"
    path.write_text(KNOWN)
    os.chmod(path, 0o640)

    failures = ["generic/475", "generic/600", "generic/600", "xfs/1 # odd", "selftests: a: b"]
    updated = write_baseline(path, failures, "6.1.0", Baseline.load(path))

    added = (
        'generic/600  # accepted on 6.1.0\n"xfs/1 # odd"  # accepted on 6.1.0\n'
        '"selftests: a: b"  # accepted on 6.1.0\n'
    )
    assert path.read_text() == KNOWN + added
    assert updated.applies("xfs/1 # odd", "6.1.0") and not updated.applies("xfs/1", "6.1.0")
    assert updated.applies("selftests: a: b", "6.1.0")
    assert updated.applies("generic/600", "6.1.0")
    assert updated == Baseline.load(path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_accepting_into_a_new_file_writes_a_header(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "known-failures.txt"

    write_baseline(path, ["generic/001"], "")

    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    assert lines[-1] == "generic/001"
    assert Baseline.load(path).applies("generic/001", "6.1.0")


def test_removing_entries_keeps_every_other_line(tmp_path: Path) -> None:
    path = tmp_path / "known"
    path.write_text(KNOWN)
    path.chmod(0o640)
    result = remove_from_baseline(path, ["generic/476", "selftests: net: reuseport_bpf"])
    text = path.read_text()
    assert text.splitlines() == [
        line for line in KNOWN.splitlines() if not line.startswith(("generic/476", '"selftests'))
    ]
    assert [e.test for e in result.entries] == [e.test for e in Baseline.load(path).entries]
    assert "generic/476" not in {e.test for e in result.entries}
    assert path.stat().st_mode & 0o777 == 0o640


def test_removing_an_unknown_name_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "known"
    path.write_text(KNOWN)
    with pytest.raises(BaselineError, match="no known failure named 'generic/999'"):
        remove_from_baseline(path, ["generic/475", "generic/999"])
    assert path.read_text() == KNOWN
    assert [p.name for p in tmp_path.iterdir()] == ["known"]


@pytest.mark.parametrize("name", ["kunit_suite.#3", "generic/001 [xfs]", "a#b[c", "ends with #"])
def test_names_with_hash_or_bracket_are_written_quoted_and_read_back_exactly(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "known"
    updated = write_baseline(path, [name], "6.1.0")
    assert [e.test for e in updated.entries] == [name]
    assert Baseline.load(path).applies(name, "6.1.0")


@pytest.mark.parametrize("name", ['say "hi"', "two\nlines", "   "])
def test_names_the_format_cannot_hold_are_unwritable(tmp_path: Path, name: str) -> None:
    assert unwritable(name)
    assert write_baseline(tmp_path / "known", [name], "6.1.0").entries == ()
