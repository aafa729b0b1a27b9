"""The direct backend's initramfs from the real busybox and Debian modules, and the per-run initrd."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from nixvmd.config.load import default_kernel_cache
from nixvmd.errors import StateSpaceError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.initramfs import Initramfs, InitramfsSpec, build_initramfs, job_archive, write_run_initrd
from nixvmd.image.modules import resolve_modules_dir
from tests.conftest import Tmpfs

BUSYBOX = Path("/bin/busybox")
DEBIAN_MODULES = default_kernel_cache() / "debian-cloud" / "modules"
TRICKY_COMMAND = 'echo "it\'s $HOME" \'a "b"\' `id -u` $((1+1)) \\\\ back\nsecond line\n\ttab; exit 3\n'


@pytest.fixture(scope="module")
def cpio_tool() -> str:
    """GNU cpio, the independent reader the archives are checked with."""
    tool = shutil.which("cpio")
    if tool is None:
        pytest.fail("cpio is not installed: apt-get install -y cpio")
    return tool


@pytest.fixture(scope="module")
def debian_spec() -> InitramfsSpec:
    """The spec for Debian's cloud kernel: host busybox, its modules tree."""
    if not BUSYBOX.is_file():
        pytest.fail(f"no static busybox at {BUSYBOX}: apt-get install -y busybox-static")
    releases = sorted(DEBIAN_MODULES.glob("*/modules.dep")) if DEBIAN_MODULES.is_dir() else []
    if not releases:
        pytest.fail(f"no Debian kernel modules in {DEBIAN_MODULES}: run scripts/fetch-debian-kernel.sh first")
    release = releases[0].parent.name
    return InitramfsSpec(
        busybox=BUSYBOX, release=release, modules_root=resolve_modules_dir(DEBIAN_MODULES, release)
    )


@pytest.fixture(scope="module")
def debian_initramfs(debian_spec: InitramfsSpec, tmp_path_factory: pytest.TempPathFactory) -> Initramfs:
    """The base archive for Debian's kernel, built once into a fresh cache."""
    return build_initramfs(debian_spec, tmp_path_factory.mktemp("initramfs-cache"))


@pytest.fixture(scope="module")
def debian_root(
    cpio_tool: str, debian_initramfs: Initramfs, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The base archive unpacked by cpio -idm."""
    root = tmp_path_factory.mktemp("initramfs-root")
    extract(cpio_tool, debian_initramfs.path.read_bytes(), root)
    return root


def extract(cpio_tool: str, archive: bytes, dest: Path) -> None:
    """Unpack `archive` into `dest` with `cpio -idm` (over what is there, like the kernel)."""
    subprocess.run(
        [cpio_tool, "-idmu", "--quiet", "--no-absolute-filenames"],
        input=archive,
        cwd=dest,
        check=True,
        capture_output=True,
    )


def newc_names(data: bytes) -> list[str]:
    """Member names of concatenated newc archives, read the way the kernel does (zero padding skipped)."""
    names: list[str] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + 4] == b"\0\0\0\0":
            offset += 4
            continue
        assert data[offset : offset + 6] == b"070701", f"bad magic at {offset}"
        filesize = int(data[offset + 54 : offset + 62], 16)
        namesize = int(data[offset + 94 : offset + 102], 16)
        names.append(data[offset + 110 : offset + 110 + namesize - 1].decode())
        offset = (offset + 110 + namesize + 3) & ~3
        offset = (offset + filesize + 3) & ~3
    return names


def guest_file(name: str) -> bytes:
    return resources.files("nixvmd.guest").joinpath(name).read_bytes()


def test_the_base_holds_init_agent_and_busybox(debian_root: Path) -> None:
    assert (debian_root / "init").read_bytes() == guest_file("agent.sh")
    assert (debian_root / "init").stat().st_mode & 0o111
    assert (debian_root / "nixvmd/bin/nixvmd-agent").read_bytes() == guest_file("agent.sh")
    assert (debian_root / "nixvmd/bin/nixvmd-smoke").read_bytes() == guest_file("smoke.sh")
    assert (debian_root / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert (debian_root / "bin/sh").readlink() == Path("busybox")
    for directory in ("proc", "sys", "dev", "tmp"):
        assert (debian_root / directory).is_dir()


def test_modules_list_names_modules_in_the_archive(debian_root: Path, debian_initramfs: Initramfs) -> None:
    listed = (debian_root / "nixvmd/modules.list").read_text().split()

    assert tuple(listed) == debian_initramfs.modules
    assert listed
    for module in listed:
        assert (debian_root / module.lstrip("/")).is_file(), module


def test_modules_are_the_kernels_own_bytes(debian_root: Path, debian_spec: InitramfsSpec) -> None:
    assert debian_spec.modules_root is not None
    for module in (debian_root / "nixvmd/modules.list").read_text().split():
        relative = Path(module).relative_to(f"/lib/modules/{debian_spec.release}")
        assert (debian_root / module.lstrip("/")).read_bytes() == (
            debian_spec.modules_root / relative
        ).read_bytes()


def test_virtio_pci_comes_after_its_dependencies(debian_root: Path, debian_spec: InitramfsSpec) -> None:
    assert debian_spec.modules_root is not None
    depmod = {}
    for line in (debian_spec.modules_root / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        depmod[module] = deps.split()
    prefix = f"/lib/modules/{debian_spec.release}/"
    listed = (debian_root / "nixvmd/modules.list").read_text().split()
    virtio_pci = "kernel/drivers/virtio/virtio_pci.ko"

    position = listed.index(prefix + virtio_pci)

    assert depmod[virtio_pci]
    for dep in depmod[virtio_pci]:
        assert listed.index(prefix + dep) < position, dep


def test_the_agents_channel_modules_are_included(debian_initramfs: Initramfs) -> None:
    names = {Path(m).name for m in debian_initramfs.modules}

    assert {"virtio_pci.ko", "virtio_blk.ko", "virtio_console.ko", "pvpanic-pci.ko"} <= names


def test_the_second_build_is_a_cache_hit(debian_spec: InitramfsSpec, tmp_path: Path) -> None:
    first = build_initramfs(debian_spec, tmp_path)
    data = first.path.read_bytes()

    second = build_initramfs(debian_spec, tmp_path)

    assert first.built is True
    assert second.built is False
    assert second.path == first.path
    assert second.modules == first.modules
    assert second.path.read_bytes() == data


def test_a_changed_input_gives_a_new_archive(cpio_tool: str, tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    shutil.copy(BUSYBOX, busybox)
    spec = InitramfsSpec(busybox=busybox, release="6.1.0-test")
    cache = tmp_path / "cache"
    first = build_initramfs(spec, cache)

    with busybox.open("ab") as f:
        f.write(b"\0rebuilt")
    second = build_initramfs(spec, cache)

    assert second.built is True
    assert second.path != first.path
    root = tmp_path / "root"
    root.mkdir()
    extract(cpio_tool, second.path.read_bytes(), root)
    assert (root / "bin/busybox").read_bytes().endswith(b"\0rebuilt")


def test_a_changed_release_gives_a_new_archive(tmp_path: Path) -> None:
    spec = InitramfsSpec(busybox=BUSYBOX, release="6.1.0-a")
    first = build_initramfs(spec, tmp_path)

    second = build_initramfs(replace(spec, release="6.1.0-b"), tmp_path)

    assert second.built is True
    assert second.path != first.path


def test_no_modules_without_a_modules_tree(cpio_tool: str, tmp_path: Path) -> None:
    built = build_initramfs(InitramfsSpec(busybox=BUSYBOX, release="6.1.0-test"), tmp_path / "cache")
    root = tmp_path / "root"
    root.mkdir()

    extract(cpio_tool, built.path.read_bytes(), root)

    assert built.modules == ()
    assert (root / "nixvmd/modules.list").read_text() == ""


def test_user_modules_are_loaded_after_the_kernels(debian_spec: InitramfsSpec, tmp_path: Path) -> None:
    assert debian_spec.modules_root is not None
    mine = tmp_path / "my_test.ko"
    mine.write_bytes(b"\x7fELF my module")

    built = build_initramfs(replace(debian_spec, user_modules=(mine,)), tmp_path / "cache")

    assert built.modules[-1] == "/nixvmd/user-modules/00-my_test.ko"


def test_the_run_initrd_is_the_base_then_the_job(
    cpio_tool: str, debian_initramfs: Initramfs, tmp_path: Path
) -> None:
    job = GuestJob(kind="command", command=TRICKY_COMMAND)
    base = debian_initramfs.path.read_bytes()

    initrd = write_run_initrd(debian_initramfs, job, tmp_path / "initrd.cpio").read_bytes()

    assert initrd[: len(base)] == base
    tail = initrd[len(base) :]
    assert tail == job_archive(job)
    listed = subprocess.run([cpio_tool, "-t", "--quiet"], input=tail, check=True, capture_output=True)
    assert listed.stdout.decode().split() == ["nixvmd", "nixvmd/job.env"]
    names = newc_names(initrd)
    assert names[-3:] == ["nixvmd", "nixvmd/job.env", "TRAILER!!!"]
    assert names.index("init") < names.index("TRAILER!!!") < names.index("nixvmd/job.env")


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/busybox"])
def test_the_job_env_gives_back_the_command_exactly(
    cpio_tool: str, debian_initramfs: Initramfs, tmp_path: Path, shell: str
) -> None:
    job = GuestJob(kind="command", command=TRICKY_COMMAND)
    initrd = write_run_initrd(debian_initramfs, job, tmp_path / "initrd.cpio").read_bytes()
    base_len = debian_initramfs.path.stat().st_size
    root = tmp_path / "root"
    root.mkdir()
    extract(cpio_tool, initrd[:base_len], root)
    extract(cpio_tool, initrd[base_len:], root)
    argv = [shell, "sh"] if shell == "/bin/busybox" else [shell]

    result = subprocess.run(
        [*argv, "-c", '. ./nixvmd/job.env; printf %s "$NIXVMD_COMMAND"'],
        cwd=root,
        check=True,
        capture_output=True,
    )

    assert result.stdout.decode() == TRICKY_COMMAND
    assert (root / "init").read_bytes() == guest_file("agent.sh")


def test_rebuilt_modules_of_the_same_release_give_a_new_archive(tmp_path: Path) -> None:
    root = tmp_path / "lib/modules/6.1.0-dev"
    (root / "kernel").mkdir(parents=True)
    (root / "modules.order").write_text("")
    for name in ("virtio_pci", "virtio_blk"):
        (root / "kernel" / f"{name}.ko").write_bytes(b"\x7fELF\0depends=\0first build")
    spec = InitramfsSpec(busybox=BUSYBOX, release="6.1.0-dev", modules_root=root)
    first = build_initramfs(spec, tmp_path / "cache")

    (root / "kernel/virtio_blk.ko").write_bytes(b"\x7fELF\0depends=\0second build")
    second = build_initramfs(spec, tmp_path / "cache")

    assert second.path != first.path
    assert b"second build" in second.path.read_bytes()


def test_no_room_for_the_base_or_the_run_initrd_says_so_and_leaves_no_partial_file(
    debian_spec: InitramfsSpec, debian_initramfs: Initramfs, small_tmpfs: Callable[..., Tmpfs], tmp_path: Path
) -> None:
    fs = small_tmpfs(tmp_path / "state", 1 << 20)
    with pytest.raises(StateSpaceError) as caught:
        build_initramfs(debian_spec, fs.path / "initramfs")
    assert str(caught.value).startswith(f"no space left on {fs.path} (tmpfs): writing the initramfs ")
    assert list((fs.path / "initramfs").iterdir()) == []
    run_dir = fs.path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    with pytest.raises(StateSpaceError, match=r"writing the run's initrd .*/r1/initrd.cpio needs 2\.\d MiB"):
        write_run_initrd(debian_initramfs, GuestJob(kind="command", command="true"), run_dir / "initrd.cpio")
    assert list(run_dir.iterdir()) == []
