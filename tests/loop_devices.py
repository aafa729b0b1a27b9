"""Loop devices for tests: a file attached as a host block device, detached again however the test ends.

Needs root (losetup); the tests that use it are skipped without it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def need_root() -> None:
    """Skip the calling test unless it may set up loop devices and mounts."""
    if os.geteuid() != 0:
        pytest.skip("loop devices and mounts need root")


@contextlib.contextmanager
def attached_loop(image: Path) -> Iterator[Path]:
    """`image` as a loop device, detached on exit."""
    argv = ["losetup", "--find", "--show", str(image)]
    device = Path(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=True)


@contextlib.contextmanager
def mounted(device: Path, mount_point: Path) -> Iterator[Path]:
    """`device` (made ext4 first) mounted at `mount_point`, unmounted on exit."""
    subprocess.run(["mkfs.ext4", "-q", "-F", str(device)], check=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", str(device), str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
