"""What git bisect answers, read as nixvmd's next step or conclusion (git's real words)."""

from __future__ import annotations

import pytest

from nixvmd.bisect.git import BisectError, FirstBad, NextStep, Undecided, parse_answer

A, B, C = "7761dc227dfa72c519a79784c0ca44a1920d99b5", "9f6ef0700bc3e6cae204fca4b773243e7dc16cf8", "1" * 40


def test_the_next_commit_and_the_steps_left() -> None:
    out = f"Bisecting: 3 revisions left to test after this (roughly 2 steps)\n[{A}] lib: c3\n"
    assert parse_answer(out) == NextStep(A, "lib: c3", 2)
    out = f"Bisecting: 0 revisions left to test after this (roughly 1 step)\n[{B}] c4\n"
    assert parse_answer(out) == NextStep(B, "c4", 1)


def test_the_first_bad_commit() -> None:
    out = f"{A} is the first bad commit\ncommit {A}\nAuthor: t <t@t>\n\n    c3\n"
    assert parse_answer(out) == FirstBad(A)


def test_only_skipped_commits_left_names_them_as_git_does() -> None:
    out = (
        "There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n"
        f"{A}\n{B}\n{C}\nWe cannot bisect more!\n"
    )
    answer = parse_answer(out)
    assert isinstance(answer, Undecided) and answer.commits == (A, B, C)
    assert answer.message.startswith(f"could not tell: commits {A[:12]}..{C[:12]} are skipped")


def test_anything_else_is_one_sentence() -> None:
    with pytest.raises(BisectError, match="does not understand"):
        parse_answer("fatal: something else\n")
