"""The fstests tree watched with real inotify: a burst settles into one decision, noise into none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.daemon.fstests_watch import FstestsWatch
from nixvmd.suite.xfstests.tree import TreeChange
from nixvmd.watch.inotify import DirectoryWatch, FileChange

DECISION_TIMEOUT = 60.0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "xfstests-dev"
    for directory in ("tests/generic", "common", "src"):
        (root / directory).mkdir(parents=True)
    (root / "check").write_text("#!/bin/bash\n")
    (root / "common" / "rc").write_text("# common/rc\n")
    return root


class Decisions:
    """The tree's settled decisions, awaited one at a time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[TreeChange] = asyncio.Queue()

    async def next(self) -> TreeChange:
        return await asyncio.wait_for(self.queue.get(), DECISION_TIMEOUT)


async def follow(tree: Path, on_change: str = "changed") -> tuple[DirectoryWatch, FstestsWatch, Decisions]:
    config = parse_config(
        f'[image]\nshare_host_root = true\n[suite]\nkind = "xfstests"\n'
        f'[xfstests]\ndir = "{tree}"\non_change = "{on_change}"\n',
        name="nixvmd.toml",
        base=tree,
    )
    decisions = Decisions()
    fstests = FstestsWatch(decisions.queue.put_nowait)

    def deliver(change: FileChange) -> None:
        fstests.note(change)

    watch = DirectoryWatch(deliver).__enter__()
    files, trees = fstests.targets(config)
    watch.follow(files=files, trees=trees)
    return watch, fstests, decisions


def test_a_make_of_300_files_over_two_seconds_is_one_decision_and_objects_are_none(tree: Path) -> None:
    async def main() -> None:
        watch, fstests, decisions = await follow(tree)
        try:
            for n in range(150):  # a make's pace: an object, then its binary, ~2 s in all
                (tree / "src" / f"t_{n}.o").write_bytes(b"object")
                (tree / "src" / f"t_{n}").write_bytes(b"binary")
                await asyncio.sleep(2.0 / 150)
            burst = await decisions.next()
            assert burst.tests is None
            assert set(burst.paths) == {f"src/t_{n}" for n in range(150)}

            # Objects, editor files and .git alone decide nothing: the next decision is the edit's.
            (tree / "src" / "more.o").write_bytes(b"object")
            (tree / "tests" / "generic" / ".001.out.swp").write_bytes(b"swap")
            (tree / "tests" / "generic" / "001.out").write_text("QA output created by 001\n")
            edit = await decisions.next()
            assert edit.paths == ("tests/generic/001.out",)
            assert edit.tests == ("generic/001",)
            assert fstests.take() == burst | edit
        finally:
            fstests.close()
            watch.close()

    asyncio.run(main())


def test_a_new_test_directory_concerns_every_test(tree: Path) -> None:
    """Its files may be written before its watch lands (then only the directory is seen): a full run."""

    async def main() -> None:
        watch, fstests, decisions = await follow(tree)
        try:
            (tree / "tests" / "xfs").mkdir()
            (tree / "tests" / "xfs" / "123.cfg").write_text("[xfs]\n")
            change = await decisions.next()
            assert change.paths[0] == "tests/xfs"
            assert change.tests is None
        finally:
            fstests.close()
            watch.close()

    asyncio.run(main())


def test_a_group_list_written_again_with_the_same_groups_is_no_change(tree: Path) -> None:
    """`make` regenerates tests/*/group.list (mkgroupfile: a new file renamed over the old one)."""
    group_list = tree / "tests" / "generic" / "group.list"
    group_list.write_text("# QA groups control file, automatically generated.\n001 auto quick\n002 auto\n")

    def regenerate(text: str) -> None:
        fresh = group_list.with_name("group.list.new")
        fresh.write_text(text)
        fresh.rename(group_list)

    async def main() -> None:
        watch, fstests, decisions = await follow(tree)
        try:
            (tree / "tests" / "generic" / "001").write_text("#!/bin/bash\n# edited\n")
            regenerate(group_list.read_text())  # the same tests in the same groups
            edit = await decisions.next()
            assert (edit.paths, edit.tests) == (("tests/generic/001",), ("generic/001",))

            regenerate(group_list.read_text())  # again, alone: no decision; the next one is the move of 002
            regenerate(group_list.read_text().replace("002 auto\n", "002 auto quick\n"))
            moved = await decisions.next()
            assert (moved.paths, moved.tests) == (("tests/generic/group.list",), None)
        finally:
            fstests.close()
            watch.close()

    asyncio.run(main())
