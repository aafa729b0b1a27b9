"""xfstests.build: run when the dev tree changed, output kept, a failure named, a cancel leaves nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.errors import ImageBuildError
from nixvmd.image.dev_tree_build import build_dev_tree, dev_tree_identity, tree_stamp, without_own_build
from tests.processes import exits_within


def _config(tmp_path: Path, build: str) -> Config:
    tree = tmp_path / "fstests"
    (tree / "src").mkdir(parents=True, exist_ok=True)
    (tree / "check").write_text("#!/bin/bash\n")
    return parse_config(
        f'[suite]\nkind = "xfstests"\n[daemon]\nstate_dir = "state"\n'
        f'[xfstests]\ndev_tree = "fstests"\nbuild = "{build}"\n',
        name="nixvmd.toml",
        base=tmp_path,
    )


def _build(config: Config, run_dir: Path) -> tuple[bool, list[str]]:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    return asyncio.run(build_dev_tree(config, run_dir, lines.append)), lines


def test_the_build_runs_in_the_tree_and_again_only_when_the_tree_changed(tmp_path: Path) -> None:
    config = _config(tmp_path, "echo built in $(pwd); touch src/helper")
    tree = tmp_path / "fstests"
    ran, lines = _build(config, tmp_path / "run1")
    assert ran and lines == ["$ echo built in $(pwd); touch src/helper", f"built in {tree}"]
    assert (tmp_path / "run1" / "build.log").read_text() == "".join(f"{line}\n" for line in lines)
    assert (tree / "src" / "helper").exists()

    assert _build(config, tmp_path / "run2") == (False, [])  # what the build itself wrote is no change
    assert not (tmp_path / "run2" / "build.log").exists()

    (tree / "src" / "aio.c").write_text("int main(void) { return 0; }\n")
    assert _build(config, tmp_path / "run3")[0]

    other = _config(tmp_path, "echo another command")
    assert _build(other, tmp_path / "run4")[0]  # a new command builds, whatever the tree


def test_a_failed_build_names_the_command_and_its_last_line_and_is_tried_again(tmp_path: Path) -> None:
    config = _config(tmp_path, "echo compiling; echo 'aio.c:1: error' >&2; exit 3")
    with pytest.raises(ImageBuildError) as failed:
        _build(config, tmp_path / "run1")
    assert str(failed.value) == (
        f"xfstests.build `echo compiling; echo 'aio.c:1: error' >&2; exit 3` failed in {tmp_path / 'fstests'}"
        " (exit status 3): aio.c:1: error (the whole output is in build.log)"
    )
    with pytest.raises(ImageBuildError):  # no good build was remembered
        _build(config, tmp_path / "run2")


def test_nothing_to_build_without_a_command(tmp_path: Path) -> None:
    assert _build(_config(tmp_path, ""), tmp_path / "run") == (False, [])


def test_a_cancelled_build_leaves_no_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    config = _config(tmp_path, f"sleep 300 & echo $! >{pid_file}; echo started; wait")
    (tmp_path / "run").mkdir()

    async def cancel_once_started() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(
            build_dev_tree(
                config, tmp_path / "run", lambda line: started.set() if line == "started" else None
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_once_started())
    assert exits_within(int(pid_file.read_text()), 10), "the build's background process lives on"


def test_the_stamp_sees_edits_and_new_files_but_not_git(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "001").write_text("echo 1\n")
    first = tree_stamp(tmp_path)
    (tmp_path / ".git" / "index").write_text("changed")
    assert tree_stamp(tmp_path) == first
    (tmp_path / "tests" / "001").write_text("echo 12\n")
    second = tree_stamp(tmp_path)
    assert second != first
    (tmp_path / "tests" / "002").write_text("")
    assert tree_stamp(tmp_path) != second


def test_the_run_key_sees_the_tree_so_an_edit_while_stopped_is_not_taken_as_tested(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    first = dev_tree_identity(config)
    assert first.startswith(" fstests:")
    assert dev_tree_identity(config) == first
    (tmp_path / "fstests" / "check").write_text("#!/bin/bash\n# edited\n")
    assert dev_tree_identity(config) != first
    assert dev_tree_identity(parse_config("", name="nixvmd.toml", base=tmp_path)) == ""


def test_what_nixvmds_own_build_wrote_is_not_news_for_the_tree_watch(tmp_path: Path) -> None:
    config = _config(tmp_path, "mkdir -p ltp && touch src/helper ltp/fsstress")
    tree = tmp_path / "fstests"
    (tree / "tests" / "generic").mkdir(parents=True)
    changed = ["src/helper", "ltp", "ltp/fsstress", "tests/generic/001.out"]  # "ltp": made by the build
    assert without_own_build(config, changed) == changed  # no build yet: every change counts
    assert _build(config, tmp_path / "run1")[0]
    assert without_own_build(config, changed) == ["tests/generic/001.out"]  # the build's own output
    (tree / "src" / "aio.c").write_text("int main(void) { return 0; }\n")  # the user's edit after it
    assert without_own_build(config, ["src/aio.c", "src/helper"]) == ["src/aio.c", "src/helper"]
    plain = _config(tmp_path, "")
    assert without_own_build(plain, changed) == changed  # no xfstests.build: nothing is nixvmd's
