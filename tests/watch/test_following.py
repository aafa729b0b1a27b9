"""DirectoryWatch following its paths: directories removed, moved, replaced, or not there yet."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixvmd.watch.inotify import ChangeKind, DirectoryWatch, FileChange
from tests.watch.watching import Changes, inotify_watches, run_watch, tmpfs_over, unmount, write_in_place


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A kernel tree's arch/x86/boot/bzImage from an earlier build."""
    path = tmp_path / "linux/arch/x86/boot/bzImage"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"previous build")
    return path


def found(path: Path, is_dir: bool = False) -> FileChange:
    return FileChange(path, ChangeKind.FOUND, is_dir)


def removed(path: Path, is_dir: bool = False) -> FileChange:
    return FileChange(path, ChangeKind.REMOVED, is_dir)


def written(path: Path) -> FileChange:
    return FileChange(path, ChangeKind.WRITTEN)


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["boot", "x86", "arch"])
def test_a_directory_removed_and_made_again_is_followed_back(image: Path, depth: int) -> None:
    top = image.parents[depth - 1]

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        watches = inotify_watches()
        shutil.rmtree(top)
        # The file's own deletion, then its directory's.
        assert await changes.take(2) == [removed(image), removed(image)]
        assert image.parent not in watch.directories
        # make writes it before nixvmd's watch can land there: it must be found all the same.
        image.parent.mkdir(parents=True)
        write_in_place(image)
        assert await changes.next() == found(image)
        await changes.assert_quiet()
        write_in_place(image)
        assert await changes.next() == written(image)
        assert image.parent in watch.directories
        assert inotify_watches() == watches, "a stale watch was left behind"

    run_watch(scenario)


def test_a_file_written_after_its_directory_came_back_is_written_not_found(image: Path) -> None:
    boot = image.parent

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        assert watch.add(boot)
        shutil.rmtree(image.parents[2])
        assert await changes.take(3) == [removed(image), removed(image), removed(boot, is_dir=True)]
        for level in (image.parents[2], image.parents[1]):
            level.mkdir()
            await changes.assert_quiet()  # levels on the way are not news
        boot.mkdir()
        # The directory target says when the watch landed; the file is not there yet.
        assert await changes.next() == found(boot, is_dir=True)
        write_in_place(image)
        assert await changes.next() == written(image)
        await changes.assert_quiet()

    run_watch(scenario)


def test_a_file_whose_directories_do_not_exist_yet_is_found_when_they_do(tmp_path: Path) -> None:
    image = tmp_path / "linux/arch/x86/boot/bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image) is False
        assert watch.directories == []
        write_in_place(tmp_path / "unrelated")  # the levels above report nothing of their own
        await changes.assert_quiet()
        image.parent.mkdir(parents=True)
        write_in_place(image)
        assert await changes.next() == found(image)
        assert watch.directories == [image.parent]
        write_in_place(image)
        assert await changes.next() == written(image)

    run_watch(scenario)


def test_a_whole_tree_moved_into_place_at_once_is_found(tmp_path: Path) -> None:
    image = tmp_path / "linux/arch/x86/boot/bzImage"
    (tmp_path / "linux").mkdir()
    staging = tmp_path / "staging/arch/x86/boot"
    staging.mkdir(parents=True)
    write_in_place(staging / "bzImage")

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image) is False
        os.rename(tmp_path / "staging/arch", tmp_path / "linux/arch")
        assert await changes.next() == found(image)
        write_in_place(image)
        assert await changes.next() == written(image)

    run_watch(scenario)


def test_a_directory_renamed_away_and_replaced_by_another_is_followed(image: Path) -> None:
    boot = image.parent
    old = boot.with_name("boot.old")
    new = boot.with_name("boot.new")

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        watches = inotify_watches()
        new.mkdir()
        write_in_place(new / "bzImage")
        os.rename(boot, old)
        os.rename(new, boot)
        assert await changes.next() == found(image)
        write_in_place(old / "bzImage")  # the watch went with the name, not the directory
        write_in_place(image)
        assert await changes.next() == written(image)
        await changes.assert_quiet()
        assert inotify_watches() == watches

    run_watch(scenario)


def test_a_directory_replaced_by_a_symlink_then_retargeted_is_followed(image: Path, tmp_path: Path) -> None:
    boot = image.parent
    first = tmp_path / "first"
    second = tmp_path / "second"
    for target in (first, second):
        target.mkdir()
        write_in_place(target / "bzImage")

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        shutil.rmtree(boot)
        os.symlink(first, boot)
        assert await changes.take(2) == [removed(image), found(image)]
        write_in_place(first / "bzImage")
        assert await changes.next() == written(image)
        # ln -sfn: a new link renamed over the old one. The old target is written to at once,
        # before nixvmd reads the events: that write is not the watched file's any more.
        os.symlink(second, boot.with_name("boot.tmp"))
        os.replace(boot.with_name("boot.tmp"), boot)
        write_in_place(first / "bzImage")
        assert await changes.next() == found(image)
        await changes.assert_quiet()
        write_in_place(second / "bzImage")
        assert await changes.next() == written(image)

    run_watch(scenario)


def test_a_tree_root_renamed_away_stops_reporting_from_its_new_place(image: Path) -> None:
    linux = image.parents[3]
    moved = linux.with_name("linux.old")

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        watches = inotify_watches()
        os.rename(linux, moved)
        assert await changes.next() == removed(image)
        write_in_place(moved / image.relative_to(linux))
        await changes.assert_quiet()
        assert inotify_watches() < watches, "watches on the moved directories were kept"
        image.parent.mkdir(parents=True)
        write_in_place(image)
        assert await changes.next() == found(image)
        assert inotify_watches() == watches

    run_watch(scenario)


@pytest.fixture
def top_level_dir() -> Iterator[Path]:
    """A directory right under /, so that / is the only level of its path that exists at first."""
    if not os.access("/", os.W_OK):
        pytest.skip("needs write access to / (run as root)")
    path = Path("/") / f"nixvmd-test-{uuid.uuid4().hex[:12]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_path_with_only_root_existing_is_followed_from_root(top_level_dir: Path) -> None:
    image = top_level_dir / "boot/bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image) is False
        assert inotify_watches() == 1  # / itself
        image.parent.mkdir(parents=True)
        write_in_place(image)
        assert await changes.next() == found(image)
        shutil.rmtree(top_level_dir)
        assert await changes.take(2) == [removed(image), removed(image)]
        assert inotify_watches() == 1

    run_watch(scenario)


def test_a_tree_removed_and_made_again_is_walked_again(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    (root / "modules").mkdir(parents=True)
    deep = root / "modules/hardware"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_tree(root)
        shutil.rmtree(root)
        assert await changes.next_for(root) == removed(root, is_dir=True)
        deep.mkdir(parents=True)
        assert await changes.next_for(root) == found(root, is_dir=True)
        write_in_place(deep / "disks.nix")
        assert await changes.next_for(deep / "disks.nix") == written(deep / "disks.nix")
        assert deep in watch.directories

    run_watch(scenario)


def test_a_subdirectory_moved_within_a_tree_is_watched_at_its_new_name_only(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    (root / "modules/hardware").mkdir(parents=True)
    renamed = root / "mods"
    outside = tmp_path / "outside"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_tree(root)
        os.rename(root / "modules", renamed)
        # Written at once, before nixvmd reads the rename: reported under the new name only.
        write_in_place(renamed / "hardware/disks.nix")
        assert await changes.next() == removed(root / "modules", is_dir=True)
        assert await changes.next() == FileChange(renamed, ChangeKind.REPLACED, is_dir=True)
        assert await changes.next() == written(renamed / "hardware/disks.nix")
        await changes.assert_quiet()
        os.rename(renamed, outside)
        write_in_place(outside / "hardware/disks.nix")
        assert await changes.next() == removed(renamed, is_dir=True)
        await changes.assert_quiet()
        assert watch.directories == [root]

    run_watch(scenario)


def test_lost_events_are_reported_as_missed_and_watching_goes_on(image: Path) -> None:
    queue_limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue_limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {queue_limit}: too many files to overflow it")

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.add_file(image)
        watches = inotify_watches()
        # Two events a file (create, close), all queued before the loop reads any.
        for n in range(queue_limit // 2 + 100):
            os.close(os.open(image.parent / f"object-{n}.o", os.O_WRONLY | os.O_CREAT, 0o644))
        assert await changes.next_for(image) == FileChange(image, ChangeKind.MISSED)
        assert watch.overflowed == 1
        write_in_place(image)
        assert await changes.next_for(image) == written(image)
        assert inotify_watches() == watches

    run_watch(scenario)


def test_follow_watches_exactly_its_targets_and_names_the_missing_ones(image: Path, tmp_path: Path) -> None:
    later = tmp_path / "later/bzImage"

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.follow(files=[image, later]) == [later]
        write_in_place(image)
        assert await changes.next() == written(image)
        assert watch.follow(files=[later]) == [later]
        write_in_place(image)
        await changes.assert_quiet()
        # Only the levels of `later` that exist are watched: / down to tmp_path.
        assert inotify_watches() == len(tmp_path.parts)
        watch.remove(later)
        assert inotify_watches() == 0

    run_watch(scenario)


def test_follow_looks_again_and_finds_a_directory_mounted_over_the_watched_one(image: Path) -> None:
    boot = image.parent

    async def scenario(watch: DirectoryWatch, changes: Changes) -> None:
        assert watch.follow(files=[image]) == []
        with tmpfs_over(boot):  # no event: the watch stays on the directory underneath
            write_in_place(image)
            await changes.assert_quiet()
            assert watch.follow(files=[image]) == []
            assert await changes.next() == found(image)
            write_in_place(image)
            assert await changes.next() == written(image)
            unmount(boot)
            # Back to the directory underneath, where the earlier build still is.
            assert await changes.next() == found(image)

    run_watch(scenario)
