"""Kernel images checked against the x86 boot protocol before anything boots them."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.config.load import default_kernel_cache
from nixvmd.errors import KernelImageError, StateSpaceError
from nixvmd.watch.kernel_image import build_of, check_bzimage, read_kernel_image, release_of
from tests.conftest import Tmpfs

DEBIAN_KERNEL = default_kernel_cache() / "debian-cloud"


def make_bzimage(
    version: str = "6.1.0-test (nixvmd@test) #1 SMP", payload: int = 4096, setup_sects: int = 4
) -> bytes:
    """A minimal bzImage: setup sectors with the boot header, then `payload` bytes of "kernel"."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<I", setup, 0x1F4, payload // 16)
    setup[0x202:0x206] = b"HdrS"
    version_at = 0x300
    struct.pack_into("<H", setup, 0x20E, version_at - 0x200)
    encoded = version.encode() + b"\0"
    setup[version_at : version_at + len(encoded)] = encoded
    return bytes(setup) + bytes(range(256)) * (payload // 256) + b"\x5a" * (payload % 256)


@pytest.fixture
def bzimage(tmp_path: Path) -> Path:
    """A complete synthetic bzImage at <tmp>/arch/x86/boot/bzImage."""
    path = tmp_path / "arch/x86/boot/bzImage"
    path.parent.mkdir(parents=True)
    path.write_bytes(make_bzimage())
    return path


@pytest.fixture
def debian_kernel() -> Path:
    """The sample kernel the setup step unpacks; its absence is a setup error, not a skip."""
    if not (DEBIAN_KERNEL / "vmlinuz").is_file() or not (DEBIAN_KERNEL / "version").is_file():
        pytest.fail(f"no Debian kernel in {DEBIAN_KERNEL}: run scripts/fetch-debian-kernel.sh first")
    return DEBIAN_KERNEL


def test_version_is_read_from_the_header(bzimage: Path) -> None:
    image = read_kernel_image(bzimage)

    assert image.version == "6.1.0-test (nixvmd@test) #1 SMP"
    assert image.path == bzimage
    assert image.size == bzimage.stat().st_size
    assert image.mtime == bzimage.stat().st_mtime
    assert image.digest == hashlib.sha256(bzimage.read_bytes()).hexdigest()
    assert image.bootable == bzimage


def test_setup_sects_zero_means_four(tmp_path: Path) -> None:
    data = bytearray(make_bzimage(setup_sects=4))
    data[0x1F1] = 0

    assert check_bzimage(bytes(data)) == "6.1.0-test (nixvmd@test) #1 SMP"


def test_the_size_check_uses_setup_sects(tmp_path: Path) -> None:
    data = make_bzimage(setup_sects=30, payload=1024)

    assert check_bzimage(data).startswith("6.1.0-test")
    with pytest.raises(KernelImageError, match="truncated"):
        check_bzimage(data[:-1])


def test_release_is_the_first_word() -> None:
    assert (
        release_of("6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP") == "6.1.0-56-cloud-amd64"
    )


@pytest.mark.parametrize(
    ("version", "build"),
    [
        ("6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian", "#1"),
        ("6.1.192 (user@host) #7 SMP Tue Jan 2 10:00:00 CET 2024", "#7"),
        ("6.8.0-rc3 (me@box) #12-nixvmd-test SMP", "#12-nixvmd-test"),  # KBUILD_BUILD_VERSION
        ("6.1.0", ""),
        ("unknown", ""),
    ],
)
def test_the_build_number_is_the_hash_word(version: str, build: str) -> None:
    assert build_of(version) == build


@pytest.mark.parametrize("cut", [1, 16, 4096, 4096 + 512])
def test_a_truncated_image_is_refused(bzimage: Path, cut: int) -> None:
    data = bzimage.read_bytes()
    bzimage.write_bytes(data[:-cut])

    with pytest.raises(KernelImageError) as info:
        read_kernel_image(bzimage)

    assert "truncated" in str(info.value)
    assert str(bzimage) in str(info.value)


def test_an_image_cut_inside_the_header_is_refused(bzimage: Path) -> None:
    bzimage.write_bytes(bzimage.read_bytes()[:0x210])

    with pytest.raises(KernelImageError, match="not an x86 bzImage"):
        read_kernel_image(bzimage)


def test_a_random_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bzImage"
    path.write_bytes(hashlib.sha512(b"not a kernel").digest() * 200)

    with pytest.raises(KernelImageError) as info:
        read_kernel_image(path)

    assert "not an x86 bzImage" in str(info.value)
    assert str(path) in str(info.value)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bzImage"
    path.write_bytes(b"")

    with pytest.raises(KernelImageError, match="not an x86 bzImage"):
        read_kernel_image(path)


def test_a_missing_file_says_to_build_one(tmp_path: Path) -> None:
    path = tmp_path / "bzImage"

    with pytest.raises(KernelImageError) as info:
        read_kernel_image(path)

    assert (
        str(info.value) == f"{path}: no kernel image there yet; build one (make bzImage) or fix kernel.image"
    )


def test_a_directory_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(KernelImageError, match="cannot read the kernel image"):
        read_kernel_image(tmp_path)


def test_snapshot_holds_the_exact_validated_bytes(bzimage: Path, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    data = bzimage.read_bytes()

    image = read_kernel_image(bzimage, snapshots)
    bzimage.write_bytes(make_bzimage(version="next build"))

    assert image.boot_path is not None
    assert image.bootable == image.boot_path
    assert image.boot_path.parent == snapshots
    assert image.boot_path.read_bytes() == data
    assert read_kernel_image(image.boot_path).version == "6.1.0-test (nixvmd@test) #1 SMP"


def test_the_same_image_twice_shares_one_snapshot(bzimage: Path, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"

    first = read_kernel_image(bzimage, snapshots)
    second = read_kernel_image(bzimage, snapshots)

    assert first.boot_path == second.boot_path
    assert [p.name for p in snapshots.iterdir()] == [first.boot_path.name if first.boot_path else ""]


def test_no_snapshot_of_a_refused_image(bzimage: Path, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    bzimage.write_bytes(bzimage.read_bytes()[:-100])

    with pytest.raises(KernelImageError):
        read_kernel_image(bzimage, snapshots)

    assert not snapshots.exists() or not any(snapshots.iterdir())


def test_old_snapshots_are_pruned(bzimage: Path, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    made = []
    for n in range(6):
        bzimage.write_bytes(make_bzimage(version=f"build {n}"))
        image = read_kernel_image(bzimage, snapshots)
        assert image.boot_path is not None
        made.append(image.boot_path)
        # Each earlier build is older by an hour, as a real edit-compile loop spaces them.
        os.utime(image.boot_path, (1_000_000 + n * 3600, 1_000_000 + n * 3600))
    os.utime(made[-1])

    assert sorted(snapshots.glob("*.bzImage")) == sorted(made[2:])


def test_the_snapshot_returned_is_never_the_one_pruned(bzimage: Path, tmp_path: Path) -> None:
    # Older snapshots can look newer: the clock stepped back, or equal coarse file times.
    snapshots = tmp_path / "snapshots"
    future = time.time() + 3600
    for n in range(4):
        bzimage.write_bytes(make_bzimage(version=f"build {n}"))
        old = read_kernel_image(bzimage, snapshots).boot_path
        assert old is not None
        os.utime(old, (future, future))
    bzimage.write_bytes(make_bzimage(version="the new build"))

    image = read_kernel_image(bzimage, snapshots)

    assert image.boot_path is not None
    assert image.boot_path.read_bytes() == bzimage.read_bytes()
    assert len(list(snapshots.glob("*.bzImage"))) == 4


def test_the_debian_kernel_version_starts_with_its_release(debian_kernel: Path) -> None:
    release = (debian_kernel / "version").read_text().strip()

    image = read_kernel_image(debian_kernel / "vmlinuz")

    assert image.version.startswith(release + " ")
    assert release_of(image.version) == release


def test_no_room_for_the_snapshot_says_so_and_leaves_no_partial_file(
    small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    image = tmp_path / "bzImage"
    image.write_bytes(make_bzimage(payload=2 << 20))
    with pytest.raises(StateSpaceError) as caught:
        read_kernel_image(image, fs.path / "kernels")
    text = str(caught.value)
    assert text.startswith(f"no space left on {fs.path} (tmpfs): writing the kernel snapshot {fs.path}/")
    assert "needs 2.0 MiB, 1.0 MiB free" in text
    assert list((fs.path / "kernels").iterdir()) == []
    fs.resize(4 << 20)
    taken = read_kernel_image(image, fs.path / "kernels")
    assert taken.boot_path is not None and taken.boot_path.read_bytes() == image.read_bytes()
