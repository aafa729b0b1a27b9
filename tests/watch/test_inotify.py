"""DirectoryWatch on real directories, inside a running asyncio loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nixvmd.watch.inotify import ChangeKind, DirectoryWatch, FileChange
from tests.watch.watching import Changes, inotify_fds, run_watch, write_in_place


@pytest.fixture
def boot_dir(tmp_path: Path) -> Path:
    """A kernel tree's arch/x86/boot with an earlier bzImage in it."""
    directory = tmp_path / "linux/arch/x86/boot"
    directory.mkdir(parents=True)
    (directory / "bzImage").write_bytes(b"previous build")
    return directory


def test_an_in_place_write_gives_one_written(boot_dir: Path) -> None:
    image = boot_dir / "bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        write_in_place(image)
        assert await changes.next() == FileChange(image, ChangeKind.WRITTEN)
        await changes.assert_quiet()

    run_watch(scenario)


def test_a_half_written_file_gives_nothing_until_closed(boot_dir: Path) -> None:
    image = boot_dir / "bzImage.new"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        with image.open("wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
            await changes.assert_quiet()
            f.write(b"\1" * 65536)
            f.flush()
            await changes.assert_quiet()
        assert await changes.next() == FileChange(image, ChangeKind.WRITTEN)

    run_watch(scenario)


def test_an_atomic_rename_onto_the_name_gives_replaced(boot_dir: Path, tmp_path: Path) -> None:
    image = boot_dir / "bzImage"
    staging = tmp_path / "staging"
    staging.mkdir()

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        (staging / "bzImage").write_bytes(b"new build")
        os.replace(staging / "bzImage", image)
        assert await changes.next() == FileChange(image, ChangeKind.REPLACED)
        await changes.assert_quiet()

    run_watch(scenario)


def test_a_rename_from_a_temp_file_beside_it_gives_replaced(boot_dir: Path) -> None:
    image = boot_dir / "bzImage"
    temp = boot_dir / ".bzImage.tmp"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        temp.write_bytes(b"new build")
        os.replace(temp, image)
        assert await changes.next() == FileChange(temp, ChangeKind.WRITTEN)
        assert await changes.next() == FileChange(temp, ChangeKind.REMOVED)
        assert await changes.next() == FileChange(image, ChangeKind.REPLACED)
        await changes.assert_quiet()

    run_watch(scenario)


def test_a_removed_file_gives_removed(boot_dir: Path) -> None:
    image = boot_dir / "bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        image.unlink()
        assert await changes.next() == FileChange(image, ChangeKind.REMOVED)

    run_watch(scenario)


def test_files_in_unwatched_directories_give_nothing(boot_dir: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "elsewhere"
    sibling.mkdir()
    below = boot_dir / "compressed"
    below.mkdir()
    image = boot_dir / "bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        write_in_place(sibling / "bzImage")
        write_in_place(below / "vmlinux.bin")
        os.replace(sibling / "bzImage", below / "bzImage")
        # inotify delivers in order: had the writes above been seen, they would come first.
        write_in_place(image)
        assert await changes.next() == FileChange(image, ChangeKind.WRITTEN)
        await changes.assert_quiet()

    run_watch(scenario)


def test_add_does_not_follow_new_subdirectories(boot_dir: Path) -> None:
    new_dir = boot_dir / "new"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir)
        new_dir.mkdir()
        assert await changes.next() == FileChange(new_dir, ChangeKind.CREATED, is_dir=True)
        write_in_place(new_dir / "file")
        await changes.assert_quiet()

    run_watch(scenario)


def test_add_tree_watches_existing_subdirectories(tmp_path: Path) -> None:
    root = tmp_path / "linux"
    (root / "fs/xfs").mkdir(parents=True)
    target = root / "fs/xfs/xfs.ko"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_tree(root)
        write_in_place(target)
        assert await changes.next() == FileChange(target, ChangeKind.WRITTEN)

    run_watch(scenario)


def test_add_tree_follows_new_subdirectories(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    root.mkdir()
    deep = root / "modules/hardware/disks"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_tree(root)
        # The lower levels exist before their parent's watch does: they must be found too.
        deep.mkdir(parents=True)
        assert await changes.next() == FileChange(root / "modules", ChangeKind.CREATED, is_dir=True)
        write_in_place(deep / "disks.nix")
        assert await changes.next_for(deep / "disks.nix") == FileChange(
            deep / "disks.nix", ChangeKind.WRITTEN
        )
        assert deep in watch.directories

    run_watch(scenario)


def test_add_tree_skips_git(tmp_path: Path) -> None:
    root = tmp_path / "linux"
    (root / ".git/objects").mkdir(parents=True)
    source = root / "Makefile"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_tree(root)
        write_in_place(root / ".git/objects/pack")
        write_in_place(source)
        assert await changes.next() == FileChange(source, ChangeKind.WRITTEN)
        assert root / ".git" not in watch.directories

    run_watch(scenario)


def test_add_of_a_missing_directory_returns_false(tmp_path: Path) -> None:
    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(tmp_path / "missing") is False
        assert watch.add_tree(tmp_path / "missing") is False
        assert watch.directories == []

    run_watch(scenario)


def test_add_of_a_file_returns_false(boot_dir: Path) -> None:
    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(boot_dir / "bzImage") is False

    run_watch(scenario)


def test_a_directory_that_appears_later_can_be_added(tmp_path: Path) -> None:
    later = tmp_path / "later"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add(later) is False
        later.mkdir()
        assert watch.add(later) is True
        write_in_place(later / "bzImage")
        assert await changes.next() == FileChange(later / "bzImage", ChangeKind.WRITTEN)

    run_watch(scenario)


def test_close_releases_the_descriptor(boot_dir: Path) -> None:
    before = inotify_fds()

    async def main() -> None:
        changes = Changes()
        watch = DirectoryWatch(changes)
        with watch:
            assert watch.add(boot_dir)
            assert inotify_fds() == before + 1
        assert inotify_fds() == before
        assert watch.directories == []
        write_in_place(boot_dir / "bzImage")
        await changes.assert_quiet()
        watch.close()

    asyncio.run(main())
    assert inotify_fds() == before
