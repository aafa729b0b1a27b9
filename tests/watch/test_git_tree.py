"""The kernel tree's git state, read from a real repository."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.watch.git_tree import GitState, read_git_state
from tests.git_trees import git, one_commit_tree


def test_a_clean_tree_gives_its_commit(tmp_path: Path) -> None:
    commit = one_commit_tree(tmp_path / "linux")
    assert asyncio.run(read_git_state(tmp_path / "linux")) == GitState(commit, dirty=False)


def test_build_output_and_other_untracked_files_do_not_make_it_dirty(tmp_path: Path) -> None:
    commit = one_commit_tree(tmp_path / "linux")
    (tmp_path / "linux" / "arch" / "x86" / "boot").mkdir(parents=True)
    (tmp_path / "linux" / "arch" / "x86" / "boot" / "bzImage").write_bytes(b"\0" * 512)
    state = asyncio.run(read_git_state(tmp_path / "linux" / "arch"))  # any directory inside works
    assert state == GitState(commit, dirty=False)


def test_an_edited_tracked_file_makes_it_dirty(tmp_path: Path) -> None:
    commit = one_commit_tree(tmp_path / "linux")
    (tmp_path / "linux" / "Makefile").write_text("VERSION = 7\n")
    assert asyncio.run(read_git_state(tmp_path / "linux")) == GitState(commit, dirty=True)
    assert not (tmp_path / "linux" / ".git" / "index.lock").exists()


def test_no_git_tree_and_no_commit_give_nothing(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert asyncio.run(read_git_state(tmp_path / "plain")) is None
    assert asyncio.run(read_git_state(tmp_path / "missing")) is None
    (tmp_path / "empty").mkdir()
    git(tmp_path / "empty", "init", "-q")
    assert asyncio.run(read_git_state(tmp_path / "empty")) is None  # no commit yet


def test_git_that_does_not_answer_in_time_gives_nothing_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_commit_tree(tmp_path / "linux")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A git that hangs (as on a dead network mount): the reading gives up and kills it.
    (bin_dir / "git").write_text(f'#!/bin/sh\necho $$ > "{tmp_path}/pid"\nexec sleep 600\n')
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert asyncio.run(read_git_state(tmp_path / "linux", timeout=2.0)) is None
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
