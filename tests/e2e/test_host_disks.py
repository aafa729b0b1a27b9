"""The user's disks in a real guest (Debian's kernel, TCG): a qcow2 and a raw image file and a loop
device appear by serial with the content the test wrote; the readonly one cannot be written; a
mounted device is refused; nothing nixvmd did not make is resized, touched or removed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KernelTree, SampleKernel, direct_config, run_once
from tests.loop_devices import attached_loop, mounted, need_root

pytestmark = pytest.mark.vm

# The guest's device of a disk with serial $1 (no udev in the direct backend's guest).
_DEV = 'dev() { echo /dev/$(basename $(dirname $(grep -lx "$1" /sys/block/vd*/serial))); }'
COMMAND = (
    f"{_DEV}; q=$(dev u-qcow2); r=$(dev u-raw); l=$(dev u-loop); "
    'echo "read: $(head -c 11 $q) $(head -c 9 $r) $(head -c 10 $l)"; '
    "if echo X | dd of=$r conv=fsync 2>/dev/null; then echo wrote-the-readonly-disk; exit 1; fi; "
    "echo readonly-refused"
)


def _marked(path: Path, marker: bytes, size: int = 4 << 20) -> Path:
    with path.open("wb") as f:
        f.write(marker)
        os.ftruncate(f.fileno(), size)
    return path


def _identity(paths: list[Path]) -> dict[Path, tuple[object, ...]]:
    """Inode, size, mtime and the first bytes of each file: what a run must leave as it was."""
    out: dict[Path, tuple[object, ...]] = {}
    for path in paths:
        st = path.stat()
        with path.open("rb") as f:
            out[path] = (st.st_ino, st.st_size, st.st_mtime_ns, f.read(64))
    return out


def test_image_files_and_a_loop_device_are_the_guests_disks_and_stay_the_users(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    need_root()
    images = tmp_path / "images"
    images.mkdir()
    raw = _marked(images / "raw.img", b"RAW-MARKER")
    qcow2 = images / "data.qcow2"
    source = _marked(tmp_path / "qcow2-source.raw", b"QCOW2-MARKER")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(source), str(qcow2)], check=True)
    backing = _marked(tmp_path / "loop-backing.img", b"LOOP-MARKER", 16 << 20)
    users = [raw, qcow2, backing]
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    state = tmp_path / "state"
    with attached_loop(backing) as loop:
        disks = (
            '[{ name = "scratch", size = "64M" }, '
            '{ name = "q", path = "images/data.qcow2", serial = "u-qcow2" }, '
            '{ name = "r", path = "images/raw.img", serial = "u-raw", readonly = true }, '
            f'{{ name = "loop", path = "{loop}", serial = "u-loop" }}]'
        )
        text = direct_config(kernel_tree, cloud_kernel, state, short_tmp / "c.sock", command=COMMAND)
        config = tmp_path / "nixvmd.toml"
        config.write_text(text.replace('[{ name = "scratch", size = "64M" }]', disks, 1))
        before = _identity(users)

        done = run_once(config, "--json")

        assert done.returncode == 0, done.stdout + done.stderr
        record = json.loads(done.stdout)
        assert record["outcome"] == "passed", record["reason"]
        output = (state / "runs" / record["id"] / "console.log").read_text()
        assert "read: QCOW2-MARKE RAW-MARKE LOOP-MARKE" in output
        assert "readonly-refused" in output
        drives = [arg for arg in record["command"] if arg.startswith("file=")]
        assert f"file={qcow2},format=qcow2" in drives[1] and f"file={raw},format=raw" in drives[2]
        assert drives[2].endswith(",readonly=on") and f"file={loop},format=raw" in drives[3]
        assert not (state / "runs" / record["id"] / "scratch").exists()  # the run's own disks are gone
        assert _identity(users) == before

        with mounted(loop, tmp_path / "mnt"):
            # The host's own ext4 writes into the loop device while it is mounted: only its
            # backing file's inode and size are nixvmd's to keep; the image files keep everything.
            before = _identity(users)
            refused = run_once(config, "--json")
            after = _identity(users)
            before[backing], after[backing] = before[backing][:2], after[backing][:2]
        assert refused.returncode == 2, refused.stdout + refused.stderr
        record = json.loads(refused.stdout)
        assert record["outcome"] == "error"
        assert record["reason"] == (
            f"vm.disks 'loop': {loop} is mounted on the host (it at {tmp_path}/mnt); unmount it first, "
            "or the guest and the host would write one file system at once"
        )
        assert after == before
    assert sorted(p.name for p in images.iterdir()) == ["data.qcow2", "raw.img"]
