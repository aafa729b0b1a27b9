"""Room for a run, checked before it starts (real small tmpfs), and a guest write the host had no room for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.errors import StateSpaceError
from nixvmd.image.disks import prepare_disks
from nixvmd.results.store import disks_dir
from nixvmd.run.space import CONSOLE_BOUND, INITRD_GUESS, Need, check_run_space, guest_disk_full, run_needs
from nixvmd.suite.xfstests.disk import MAX_RESULT_BYTES
from nixvmd.vm.cmdline import Disk
from nixvmd.watch.kernel_image import KernelImage
from tests.conftest import Tmpfs

Mount = Callable[..., Tmpfs]


def _config(state: Path, extra: str = "", disks: str = '[{ name = "scratch", size = "64M" }]') -> Config:
    text = f'[kernel]\ntree = "/k"\n[vm]\ndisks = {disks}\n[daemon]\nstate_dir = "{state}"\n{extra}'
    return parse_config(text, name="nixvmd.toml", base=Path("/tmp"))


def _kernel(state: Path, size: int = 14 << 20, snapshot: bool = True) -> KernelImage:
    boot = state / "kernels" / "k.bzImage"
    if snapshot:
        boot.parent.mkdir(parents=True, exist_ok=True)
        boot.write_bytes(b"k")
    return KernelImage(Path("/k/bzImage"), "6.1.0 test", size, 0.0, "d", boot)


def _sizes(needs: list[Need]) -> dict[str, int]:
    return {n.what: n.size for n in needs}


def test_the_bound_counts_the_snapshot_initrd_disk_growth_and_results(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_dir = state / "runs" / "r1"
    config = _config(state)
    assert _sizes(run_needs(config, _kernel(state, snapshot=False), run_dir)) == {
        "kernel snapshot": 14 << 20,
        "initrd": 2 * INITRD_GUESS,
        "disk growth": 64 << 20,
        "console and results": CONSOLE_BOUND,
    }
    # A taken snapshot and a built base archive: only what is still to come.
    (state / "initramfs").mkdir(parents=True)
    (state / "initramfs" / "a.cpio").write_bytes(bytes(3 << 20))
    (state / "initramfs" / "b.cpio").write_bytes(bytes(1 << 20))
    # Disks are fresh for each run: what an earlier run wrote to its disks is no room gained.
    (disk,) = prepare_disks(config.vm.disks, disks_dir(state / "runs" / "r0"))
    with disk.path.open("r+b") as f:
        f.write(b"\1" * (16 << 20))
    assert _sizes(run_needs(config, _kernel(state), run_dir)) == {
        "initrd": 6 << 20,
        "disk growth": 64 << 20,
        "console and results": CONSOLE_BOUND,
    }
    need = next(n for n in run_needs(config, _kernel(state), run_dir) if n.what == "disk growth")
    assert need.where == disks_dir(run_dir)


def test_xfstests_adds_the_results_it_extracts_and_names_its_disk_sizes(
    small_tmpfs: Mount, tmp_path: Path
) -> None:
    small = _config(tmp_path, '[suite]\nkind = "xfstests"\n[xfstests]\nresults_size = "100M"\n', disks="[]")
    big = _config(tmp_path, '[suite]\nkind = "xfstests"\n[xfstests]\nresults_size = "4G"\n', disks="[]")
    assert _sizes(run_needs(small, _kernel(tmp_path), tmp_path))["console and results"] == CONSOLE_BOUND + (
        100 << 20
    )
    assert _sizes(run_needs(big, _kernel(tmp_path), tmp_path))["console and results"] == (
        CONSOLE_BOUND + MAX_RESULT_BYTES
    )
    fs = small_tmpfs(tmp_path / "full", 64 << 20)
    full = _config(fs.path, '[suite]\nkind = "xfstests"\n')
    with pytest.raises(StateSpaceError) as caught:
        check_run_space(full, _kernel(fs.path), fs.path)
    assert "; free some space, make vm.disks or xfstests.test_size/scratch_size/results_size smaller" in str(
        caught.value
    )


def test_a_run_that_may_not_fit_is_refused_saying_what_it_needs_and_what_is_free(
    small_tmpfs: Mount, tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state", 96 << 20)
    run_dir = fs.path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    config = _config(fs.path)
    kernel = _kernel(fs.path)
    with pytest.raises(StateSpaceError) as caught:
        check_run_space(config, kernel, run_dir)
    text = str(caught.value)
    assert text.startswith(f"not enough space on {fs.path} (tmpfs) for a run in {fs.path}: ")
    assert " it may write 112 MiB " in text
    assert "(initrd 16 MiB, disk growth 64 MiB, console and results 32 MiB), 96 MiB free;" in text
    assert text.endswith("free some space, make vm.disks smaller or move daemon.state_dir")
    assert caught.value.path == fs.path and caught.value.needed == 112 << 20
    fs.resize(128 << 20)
    check_run_space(config, kernel, run_dir)
    fs.fill(leave=100 << 20)
    with pytest.raises(StateSpaceError, match="100 MiB free"):
        check_run_space(config, kernel, run_dir)


def test_a_full_host_under_a_guest_write_names_the_disk_image(small_tmpfs: Mount, tmp_path: Path) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    disks = (Disk(fs.path / "disks" / "a.img", "sa"), Disk(fs.path / "disks" / "b.img", "sb"))
    event = {"device": "nixvmd-disk1", "operation": "write", "action": "stop", "nospace": True}
    error = guest_disk_full(event, disks, fs.path)
    assert str(error).startswith(f"no space left on {fs.path} (tmpfs): the guest's write into the disk ")
    assert f" {fs.path}/disks/b.img failed with " in str(error)
    other = guest_disk_full({"device": "root", "nospace": True}, disks, fs.path)
    assert f": the guest's write into a disk image under {fs.path} failed with " in str(other)
