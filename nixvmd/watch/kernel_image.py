"""A kernel image on disk, checked against the x86 boot protocol before anything boots it."""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import KernelImageError
from nixvmd.results.space import make_dirs, room_for

_HEADER_LEN = 0x240
_MAGIC_OFFSET = 0x202
_SETUP_SECTS = 0x1F1
_SYSSIZE = 0x1F4
_VERSION_PTR = 0x20E
# UTS_VERSION starts with "#<build number>" ("#7 SMP PREEMPT ..."); kbuild counts builds in
# .version, so it tells two builds of one release apart. KBUILD_BUILD_VERSION may replace it.
_BUILD = re.compile(r"\s(#\S+)")


@dataclass(frozen=True)
class KernelImage:
    """A bzImage that passed the header checks: where it is, what it says it is."""

    path: Path
    version: str
    size: int
    mtime: float
    digest: str
    boot_path: Path | None = None  # the snapshot QEMU boots, safe from the next `make`

    @property
    def bootable(self) -> Path:
        return self.boot_path or self.path

    @property
    def release(self) -> str:
        """The kernel release, `uname -r` in the guest ("6.1.0-13-cloud-amd64")."""
        return release_of(self.version)

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": self.version,
            "mtime": self.mtime,
            "size": self.size,
            "digest": self.digest,
        }


def read_kernel_image(
    path: Path, snapshot_dir: Path | None = None, *, tree: Path | None = None
) -> KernelImage:
    """Check `path` is a complete x86 bzImage and read its version; raise KernelImageError if not.

    With `snapshot_dir`, the checked bytes are kept there for booting (StateSpaceError
    when that file system has no room for them).

    The boot protocol puts "HdrS" at 0x202, the setup size at 0x1F1 and the payload size
    (16-byte units) at 0x1F4, so a file cut short by a copy in progress is caught here.
    A missing image in a missing kernel `tree` is said to be the tree's absence.
    """
    try:
        with path.open("rb") as f:
            stat = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        if tree is not None and not tree.exists():
            raise KernelImageError(
                f"the kernel tree {tree} does not exist (yet); create it or fix kernel.tree"
            ) from None
        raise KernelImageError(
            f"{path}: no kernel image there yet; build one (make bzImage) or fix kernel.image"
        ) from None
    except OSError as exc:
        raise KernelImageError(f"{path}: cannot read the kernel image: {exc.strerror}") from None
    version = check_bzimage(data, str(path))
    digest = hashlib.sha256(data).hexdigest()
    boot_path = None
    if snapshot_dir is not None:
        boot_path = _snapshot(data, digest, snapshot_dir)
    return KernelImage(
        path=path,
        version=version,
        size=len(data),
        mtime=stat.st_mtime,
        digest=digest,
        boot_path=boot_path,
    )


def _snapshot(data: bytes, digest: str, snapshot_dir: Path, keep: int = 4) -> Path:
    """Keep the exact bytes that were checked, so a rebuild during boot cannot tear them.

    No room for them raises StateSpaceError, with no partial snapshot left behind.
    """
    make_dirs(snapshot_dir, "creating the kernel snapshot directory")
    target = snapshot_dir / f"{digest[:20]}.bzImage"
    if not target.exists():
        tmp = snapshot_dir / f".{digest[:20]}.tmp"
        with room_for(target, "writing the kernel snapshot", len(data), partial=tmp):
            tmp.write_bytes(data)
            tmp.replace(target)
    os.utime(target)
    # The target is kept whatever the times say: a clock stepped back must not prune what is about to boot.
    others = [p for p in snapshot_dir.glob("*.bzImage") if p != target]
    olds = sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds[keep - 1 :]:
        old.unlink(missing_ok=True)
    return target


def check_bzimage(data: bytes, name: str = "kernel image") -> str:
    """The version string of bzImage `data`; KernelImageError when it is not a whole bzImage."""
    if len(data) < _HEADER_LEN or data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] != b"HdrS":
        raise KernelImageError(
            f"{name}: not an x86 bzImage (no 'HdrS' boot header at 0x202); "
            "point kernel.image at arch/x86/boot/bzImage"
        )
    setup_sects = data[_SETUP_SECTS] or 4
    (syssize,) = struct.unpack_from("<I", data, _SYSSIZE)
    expected = (setup_sects + 1) * 512 + syssize * 16
    if len(data) < expected:
        raise KernelImageError(
            f"{name}: truncated bzImage ({len(data)} of {expected} bytes); "
            "wait for the build to finish or rebuild it"
        )
    (pointer,) = struct.unpack_from("<H", data, _VERSION_PTR)
    start = pointer + 0x200
    if pointer == 0 or start >= len(data):
        return "unknown"
    end = data.find(b"\0", start, start + 512)
    raw = data[start : end if end > 0 else start + 512]
    return raw.decode("ascii", "replace").strip() or "unknown"


def release_of(version: str) -> str:
    """The release (uname -r) part of a header version string: its first word."""
    return version.split()[0] if version.strip() else version


def build_of(version: str) -> str:
    """The build number of a header version string ("#7"), or "" when it has none."""
    match = _BUILD.search(version)
    return match.group(1) if match else ""
