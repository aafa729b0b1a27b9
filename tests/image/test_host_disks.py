"""The user's disks (vm.disks `path`): format read, attached as they are, refused when unusable."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from nixvmd.config.schema import DiskConfig, DiskFormat
from nixvmd.errors import HostDeviceError
from nixvmd.image.disks import prepare_disks
from nixvmd.image.host_disks import check_host_disk
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.store import LIVE_LOCK, RunStore, scratch_dir
from nixvmd.run.workspace import open_workspace
from nixvmd.vm.cmdline import Accelerator, Disk, MachineSpec, machine_options
from tests.loop_devices import attached_loop, mounted, need_root


def _user_disk(path: Path, *, readonly: bool = False, fmt: DiskFormat | None = None) -> DiskConfig:
    return DiskConfig("mine", 0, "mine", readonly, fmt, path=path)


def _sparse(path: Path, size: int = 8 << 20) -> Path:
    with path.open("wb") as f:
        os.ftruncate(f.fileno(), size)
    return path


def test_a_qcow2_and_a_raw_file_are_attached_where_they_are_in_their_format(tmp_path: Path) -> None:
    qcow2 = tmp_path / "user" / "data.qcow2"
    qcow2.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "16M"], check=True)
    raw = _sparse(tmp_path / "user" / "data.img")
    before = {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in (qcow2, raw)}
    run_disks = tmp_path / "run" / "disks"
    attached = prepare_disks(
        [
            DiskConfig("a", 0, "sa", path=qcow2),
            DiskConfig("b", 0, "sb", True, path=raw),
            DiskConfig("fresh", 16 << 20, "sc"),
        ],
        run_disks,
    )
    assert attached == (
        Disk(qcow2, "sa", "qcow2", cache="writeback"),
        Disk(raw, "sb", "raw", readonly=True, cache="writeback"),
        Disk(run_disks / "fresh.img", "sc"),
    )
    assert sorted(p.name for p in run_disks.iterdir()) == ["fresh.img"]
    assert {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in (qcow2, raw)} == before


def _qcow2_header(tmp_path: Path) -> Path:
    """The first 512 bytes of a real qcow2 image: what a guest could write at a raw disk's offset 0."""
    image = tmp_path / "header-source.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    header = tmp_path / "qcow2-header"
    header.write_bytes(image.read_bytes()[:512])
    return header


def _drive_option(disk: Disk, tmp_path: Path) -> str:
    """The -drive option nixvmd gives QEMU for `disk` (as its first disk)."""
    spec = MachineSpec(Accelerator.TCG, 64 << 20, 1, None, tmp_path / "console.log", (disk,))
    argv = machine_options(spec)
    return argv[argv.index("-drive") + 1]


def test_a_disk_keeps_the_format_it_was_given_whatever_its_first_bytes_became(tmp_path: Path) -> None:
    # A guest wrote a qcow2 header onto a raw disk: the next run must not open it as qcow2
    # (its backing file could name any file of the host's).
    raw = _sparse(tmp_path / "raw.img")
    with raw.open("r+b") as f:
        f.write(_qcow2_header(tmp_path).read_bytes())
    assert raw.read_bytes()[:4] == b"QFI\xfb"
    assert check_host_disk(_user_disk(raw, fmt=DiskFormat.RAW)).format == "raw"
    qcow2 = tmp_path / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "16M"], check=True)
    assert check_host_disk(_user_disk(qcow2, fmt=DiskFormat.QCOW2)).format == "qcow2"
    need_root()
    # A block device with no format given is raw, whatever is on it.
    with attached_loop(raw) as device:
        attached = prepare_disks([_user_disk(device)], tmp_path / "disks")
        assert attached == (Disk(device, "mine", "raw", cache="writeback"),)
        assert _drive_option(attached[0], tmp_path).startswith(f"file={device},format=raw,")


def _qemu_io(drive: str, *commands: str) -> list[str]:
    """Real QEMU (no guest: -machine none) with `drive` as nixvmd gives it; qemu-io `commands` on it."""
    monitor = "".join(f'qemu-io nixvmd-disk0 "{c}"\n' for c in commands) + "quit\n"
    done = subprocess.run(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio",
         "-drive", drive],
        input=monitor, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "wrote" in line or "failed" in line]


def test_a_writable_file_that_is_not_qcow2_is_left_to_qemus_guarded_probe(tmp_path: Path) -> None:
    header = _qcow2_header(tmp_path)
    raw = _sparse(tmp_path / "raw.img")
    assert check_host_disk(_user_disk(raw, readonly=True)).format == "raw"  # the guest cannot write it
    attached = prepare_disks([_user_disk(raw)], tmp_path / "disks")
    assert attached == (Disk(raw, "mine", None, cache="writeback"),)
    drive = _drive_option(attached[0], tmp_path)
    assert drive.startswith(f"file={raw},if=none,") and "format=" not in drive
    # QEMU probes it as raw and refuses the write that would make it a qcow2; other data at
    # offset 0 (a partition table, a file system) still lands.
    said = _qemu_io(drive, f"write -s {header} 0 512", "write -P 0xab 0 512")
    assert said[0] == "write failed: Operation not permitted" and said[1].startswith("wrote 512/512 bytes")
    assert raw.read_bytes()[:4] == b"\xab" * 4
    assert check_host_disk(_user_disk(raw)).format is None
    # Given format = "raw", the user trusts the guest: the same write goes through.
    trusted = prepare_disks([_user_disk(raw, fmt=DiskFormat.RAW)], tmp_path / "disks")
    assert _qemu_io(_drive_option(trusted[0], tmp_path), f"write -s {header} 0 512")[0].startswith("wrote")
    assert raw.read_bytes()[:4] == b"QFI\xfb"


def test_a_path_that_is_missing_or_not_a_disk_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(HostDeviceError) as caught:
        check_host_disk(_user_disk(tmp_path / "gone.img"))
    assert str(caught.value) == (
        f"vm.disks 'mine': {tmp_path}/gone.img does not exist; nixvmd attaches a path, never creates one"
    )
    assert not (tmp_path / "gone.img").exists()
    with pytest.raises(HostDeviceError, match="is neither an image file nor a block device"):
        check_host_disk(_user_disk(tmp_path))


_AS_NOBODY = """
import sys
from pathlib import Path
from nixvmd.config.schema import DiskConfig, DiskFormat
from nixvmd.errors import HostDeviceError
from nixvmd.image.host_disks import check_host_disk
for readonly in (False, True):
    try:
        print(check_host_disk(DiskConfig("mine", 0, "mine", readonly, path=Path(sys.argv[1]))).format)
    except HostDeviceError as exc:
        print(exc)
"""


def test_a_file_the_user_cannot_open_read_write_is_refused_unless_readonly() -> None:
    # Root opens anything: the check runs as nobody, on a file nobody may read but not write.
    need_root()
    python = Path("/usr/bin/python3")
    if not python.is_file():
        pytest.skip("no /usr/bin/python3 that nobody may run")
    with tempfile.TemporaryDirectory() as place:
        Path(place).chmod(0o755)
        image = _sparse(Path(place) / "theirs.img")
        image.chmod(0o644)
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                str(python),
                "-c",
                _AS_NOBODY,
                str(image),
            ],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(Path(__file__).parents[2])},
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"vm.disks 'mine': {image} cannot be opened to read and write: Permission denied; give your user "
        "access to it (or set readonly = true if the guest need not write it)",
        "raw",
    ]


def test_a_mounted_loop_device_is_refused_and_usable_again_once_unmounted(tmp_path: Path) -> None:
    need_root()
    with attached_loop(_sparse(tmp_path / "disk.img", 16 << 20)) as device:
        with mounted(device, tmp_path / "mnt"):
            with pytest.raises(HostDeviceError) as caught:
                check_host_disk(_user_disk(device, readonly=True))
            assert str(caught.value) == (
                f"vm.disks 'mine': {device} is mounted on the host (it at {tmp_path}/mnt); unmount it "
                "first, or the guest and the host would write one file system at once"
            )
        assert check_host_disk(_user_disk(device)).format == "raw"


def _fake_sysfs(tmp_path: Path, device: Path) -> tuple[Path, Path]:
    """A sysfs tree laid out as the kernel's for `device` (a real loop device), and an empty mountinfo."""
    rdev = os.stat(device).st_rdev
    sysfs = tmp_path / "sys"
    node = sysfs / "devices" / "virtual" / "block" / device.name
    (node / "holders").mkdir(parents=True)
    (node / "dev").write_text(f"{os.major(rdev)}:{os.minor(rdev)}\n")
    (sysfs / "dev" / "block").mkdir(parents=True)
    link = sysfs / "dev" / "block" / f"{os.major(rdev)}:{os.minor(rdev)}"
    link.symlink_to(Path("..", "..", "devices", "virtual", "block", device.name))
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / / rw shared:1 - tmpfs tmpfs rw\n")
    return sysfs, mountinfo


# No device-mapper and no partition scanning here: the holder and the partition are sysfs
# entries laid out as the kernel's, the device itself is real.


def test_a_device_held_by_device_mapper_is_refused(tmp_path: Path) -> None:
    need_root()
    with attached_loop(_sparse(tmp_path / "disk.img")) as device:
        sysfs, mountinfo = _fake_sysfs(tmp_path, device)
        (sysfs / "devices" / "virtual" / "block" / device.name / "holders" / "dm-0").mkdir()
        with pytest.raises(HostDeviceError) as caught:
            check_host_disk(_user_disk(device), sysfs=sysfs, mountinfo=mountinfo)
        assert str(caught.value) == (
            f"vm.disks 'mine': {device} is in use on the host (it is held by dm-0: device-mapper or md); "
            "stop that device first"
        )


def test_a_disk_whose_partition_is_mounted_or_held_is_refused(tmp_path: Path) -> None:
    need_root()
    with attached_loop(_sparse(tmp_path / "disk.img")) as device:
        sysfs, mountinfo = _fake_sysfs(tmp_path, device)
        assert check_host_disk(_user_disk(device), sysfs=sysfs, mountinfo=mountinfo).format == "raw"
        partition = sysfs / "devices" / "virtual" / "block" / device.name / f"{device.name}p1"
        (partition / "holders").mkdir(parents=True)
        (partition / "partition").write_text("1\n")
        (partition / "dev").write_text("259:7\n")
        mountinfo.write_text(mountinfo.read_text() + "40 22 259:7 / /srv rw - ext4 /dev/x rw\n")
        with pytest.raises(
            HostDeviceError, match=f"mounted on the host \\(its partition {device.name}p1 at /srv\\)"
        ):
            check_host_disk(_user_disk(device), sysfs=sysfs, mountinfo=mountinfo)
        mountinfo.write_text("22 1 0:21 / / rw shared:1 - tmpfs tmpfs rw\n")
        (partition / "holders" / "md0").mkdir()
        with pytest.raises(HostDeviceError, match=f"its partition {device.name}p1 is held by md0"):
            check_host_disk(_user_disk(device), sysfs=sysfs, mountinfo=mountinfo)


def test_neither_the_runs_cleanup_nor_the_stale_run_sweep_reaches_a_users_disk(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    mine = _sparse(state / "mine.img")  # even inside the state dir
    run_id, run_dir = RunStore(state).new_run_dir()
    with open_workspace(run_dir, [DiskConfig("mine", 0, "mine", path=mine)]) as workspace:
        assert workspace.disks[0].path == mine
        assert [p for p in run_dir.rglob("*") if p.name == "mine.img"] == []
    before = (mine.stat().st_ino, mine.stat().st_size, mine.stat().st_mtime_ns)
    # What a daemon that died mid-run leaves: a `running` record, a lock nobody holds, scratch.
    RunStore(state).save(RunRecord(run_id, "command", "/k", "6.1.0", "direct", 0.0, outcome=Outcome.RUNNING))
    (run_dir / LIVE_LOCK).touch()
    scratch_dir(run_dir).mkdir()
    assert RunStore(state).recover() == [run_id] and not scratch_dir(run_dir).exists()
    assert (mine.stat().st_ino, mine.stat().st_size, mine.stat().st_mtime_ns) == before
