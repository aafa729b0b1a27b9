"""The direct backend's guest image: a busybox initramfs with nixvmd's agent, cached by content.

The base archive (busybox, agent, modules) depends only on its inputs and is cached under
<state_dir>/initramfs/<digest>.cpio; each run appends a tiny archive holding its job, which
the kernel unpacks over the base (concatenated newc archives are one initramfs).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nixvmd.errors import ImageBuildError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.cpio import Entry, write_cpio
from nixvmd.image.modules import select_modules
from nixvmd.results.space import make_dirs, room_for, write_atomic

# What the agent needs from a modular kernel (Debian's build these as modules); each is
# skipped when built in. pvpanic lets QEMU report a panic; virtio-console gives the agent
# its own channel, without which it falls back to the serial console; qemu_fw_cfg tells
# QEMU's vmcoreinfo device where the kernel's VMCOREINFO is, for a crash's vmcore.
BASE_MODULES = ("virtio_pci", "virtio_blk")
OPTIONAL_MODULES = ("virtio_console", "pvpanic_pci", "qemu_fw_cfg")
_FORMAT_VERSION = "1"


@dataclass(frozen=True)
class InitramfsSpec:
    """Everything the base archive depends on."""

    busybox: Path
    release: str
    modules_root: Path | None = None
    extra_modules: tuple[str, ...] = ()
    user_modules: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Initramfs:
    """A built base archive and what went into it."""

    path: Path
    digest: str
    modules: tuple[str, ...]
    built: bool


def _guest_file(name: str) -> bytes:
    return resources.files("nixvmd.guest").joinpath(name).read_bytes()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageBuildError(f"cannot read {what} {path}: {exc.strerror}") from None


def base_entries(spec: InitramfsSpec) -> tuple[list[Entry], tuple[str, ...]]:
    """The entries of the base archive and the guest paths of its modules, in load order."""
    busybox = _read(spec.busybox, "busybox (install busybox-static, or set image.busybox)")
    if not busybox.startswith(b"\x7fELF"):
        raise ImageBuildError(f"{spec.busybox} is not an ELF binary; point image.busybox at a static busybox")
    entries = [
        Entry.directory(d)
        for d in (
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "run",
            "mnt",
            "etc",
            "root",
            "nixvmd",
            "nixvmd/bin",
            "lib",
            "lib/modules",
        )
    ]
    entries += [
        Entry.file("bin/busybox", busybox, 0o755),
        Entry.symlink("bin/sh", "busybox"),
        Entry.file("init", _guest_file("agent.sh"), 0o755),
        Entry.file("nixvmd/bin/nixvmd-agent", _guest_file("agent.sh"), 0o755),
        Entry.file("nixvmd/bin/nixvmd-smoke", _guest_file("smoke.sh"), 0o755),
        Entry.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        Entry.file("etc/group", b"root:x:0:\n"),
    ]
    guest_modules: list[str] = []
    if spec.modules_root is not None:
        mods = select_modules(spec.modules_root, [*BASE_MODULES, *spec.extra_modules], OPTIONAL_MODULES)
        moddir = f"lib/modules/{spec.release}"
        made = {"lib/modules"}
        for ko in mods.ordered:
            rel = ko.relative_to(spec.modules_root)
            parts = Path(moddir, rel).parts
            for i in range(3, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    entries.append(Entry.directory(d))
            entries.append(Entry.file(f"{moddir}/{rel}", _read(ko, "module"), 0o644))
            guest_modules.append(f"/{moddir}/{rel}")
    for index, ko in enumerate(spec.user_modules):
        name = f"nixvmd/user-modules/{index:02d}-{ko.name}"
        if index == 0:
            entries.append(Entry.directory("nixvmd/user-modules"))
        entries.append(Entry.file(name, _read(ko, "kernel.modules entry"), 0o644))
        guest_modules.append(f"/{name}")
    entries.append(Entry.file("nixvmd/modules.list", "".join(f"{m}\n" for m in guest_modules).encode()))
    return entries, tuple(guest_modules)


_selection_cache: dict[tuple[object, ...], tuple[Path, ...]] = {}
_digest_cache: dict[tuple[str, int, int, int, int], bytes] = {}


def _selected_modules(spec: InitramfsSpec) -> tuple[Path, ...]:
    """The modules for `spec`, remembered while the modules tree's top directory is unchanged."""
    if spec.modules_root is None:
        return ()
    try:
        st = spec.modules_root.stat()
    except OSError:
        st = None
    key = (spec.modules_root, spec.extra_modules, st and (st.st_ino, st.st_mtime_ns))
    if key not in _selection_cache:
        wanted = [*BASE_MODULES, *spec.extra_modules]
        _selection_cache[key] = select_modules(spec.modules_root, wanted, OPTIONAL_MODULES).ordered
    return _selection_cache[key]


def _content_digest(path: Path) -> bytes:
    """sha256 of a file's bytes, recomputed only when its stat (inode, size, mtime) changes."""
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _digest_cache.get(key)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).digest()
        _digest_cache[key] = digest
    return digest


def spec_digest(spec: InitramfsSpec) -> str:
    """A digest of everything that goes into the archive, by content (bytes, not mtimes)."""
    h = hashlib.sha256(_FORMAT_VERSION.encode())
    h.update(_guest_file("agent.sh") + _guest_file("smoke.sh"))
    h.update(spec.release.encode())
    files = [spec.busybox, *_selected_modules(spec), *spec.user_modules]
    for path in files:
        h.update(str(path).encode() + b"\0")
        try:
            h.update(_content_digest(path))
        except OSError:
            h.update(b"missing")
    return h.hexdigest()[:24]


def build_initramfs(spec: InitramfsSpec, cache_dir: Path) -> Initramfs:
    """The base archive for `spec`, from the cache when its inputs are unchanged."""
    digest = spec_digest(spec)
    path = cache_dir / f"{digest}.cpio"
    modules_file = cache_dir / f"{digest}.modules"
    if path.is_file() and modules_file.is_file():
        os.utime(path)
        return Initramfs(path, digest, tuple(modules_file.read_text().split()), built=False)
    entries, modules = base_entries(spec)
    make_dirs(cache_dir, "creating the initramfs cache")
    write_atomic(path, write_cpio(entries), "writing the initramfs")
    write_atomic(modules_file, "\n".join(modules), "writing the initramfs module list")
    _prune(cache_dir, keep=8)
    return Initramfs(path, digest, modules, built=True)


def job_archive(job: GuestJob) -> bytes:
    """The per-run archive that carries the job into the guest."""
    return write_cpio([Entry.directory("nixvmd"), Entry.file("nixvmd/job.env", job.to_env_file().encode())])


def write_run_initrd(base: Initramfs, job: GuestJob, dest: Path) -> Path:
    """The run's initrd: the cached base archive followed by the job archive.

    No room for it raises StateSpaceError and leaves no partial initrd.
    """
    job_bytes = job_archive(job)
    with base.path.open("rb") as src:
        size = os.fstat(src.fileno()).st_size
        needed = size + len(job_bytes)
        with room_for(dest, "writing the run's initrd", needed, partial=dest), dest.open("wb") as out:
            _copy(src.fileno(), out.fileno(), size)
            out.write(job_bytes)
    return dest


def _copy(src: int, dest: int, size: int) -> None:
    """`size` bytes from `src` to `dest` in the kernel; sendfile may copy less than asked per call."""
    offset = 0
    while offset < size:
        sent = os.sendfile(dest, src, offset, size - offset)
        if sent == 0:
            raise OSError(errno.EIO, f"the initramfs shrank while it was copied ({offset} of {size} bytes)")
        offset += sent


def _prune(cache_dir: Path, keep: int) -> None:
    archives = sorted(cache_dir.glob("*.cpio"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in archives[keep:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".modules").unlink(missing_ok=True)
