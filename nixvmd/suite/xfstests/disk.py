"""The results disk: RESULT_BASE as the guest wrote it, a tar stream with this run's token first.

The guest writes the tar onto the raw disk; after QEMU is gone it is read back here. Only a
tar whose first member holds this run's token counts (a disk that held anything else, or
a guest that crashed before writing, gives nothing), and only regular files and
directories inside the destination are extracted, MAX_RESULT_BYTES in all.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path, PurePosixPath

from nixvmd.results.space import make_dirs, room_for

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 512 << 20


def extract_results(image: Path, dest: Path, token: str) -> Path | None:
    """RESULT_BASE from the results disk `image` into `dest`; None when it holds no tar of this run."""
    try:
        with tarfile.open(image, "r:") as tar:
            first = tar.next()
            found = tar.extractfile(first) if first is not None and first.isfile() else None
            if found is None or found.read(64).decode(errors="replace").strip() != token:
                return None
            _extract_members(tar, dest)
    except (OSError, tarfile.TarError) as exc:
        log.info("no fstests results on %s: %s", image, exc)
        return dest if dest.is_dir() else None
    return dest


def _extract_members(tar: tarfile.TarFile, dest: Path) -> None:
    """Regular files and directories only, inside `dest`, up to MAX_RESULT_BYTES in all."""
    budget = MAX_RESULT_BYTES
    for member in tar:
        parts = [p for p in PurePosixPath(member.name).parts if p not in ("", ".")]
        if not parts or member.name.startswith("/") or ".." in parts:
            continue
        target = dest.joinpath(*parts)
        if member.isdir():
            make_dirs(target, "extracting the fstests results into")
        elif member.isfile() and member.size <= budget:
            source = tar.extractfile(member)
            if source is None:
                continue
            make_dirs(target.parent, "extracting the fstests results into")
            what = "extracting the fstests result"
            with room_for(target, what, member.size, partial=target), target.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            budget -= member.size
