"""Host programs with the shared libraries they load, as `ldd` names them.

A derivation may not use the host's paths, so what it needs from the host (QEMU, and the
guest's bash or mkfs) is copied into a store path with its libraries and dynamic loader:
`libraries` says which files those are, `find_program` where a program is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import DistributeError

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESOLVED = re.compile(r"^\s*(?P<name>\S+) => (?P<path>/\S+) \(0x[0-9a-f]+\)$")
_LOADER = re.compile(r"^\s*(?P<path>/\S+) \(0x[0-9a-f]+\)$")
_MISSING = re.compile(r"^\s*(?P<name>\S+) => not found$")


@dataclass(frozen=True)
class Library:
    """One file the dynamic loader maps for a program: the name it is asked for, and the host's copy."""

    name: str  # the soname ("libc.so.6"); the loader's own file name for the loader
    path: Path  # where ldd found it on this host
    loader: bool = False


def find_program(name: str) -> Path:
    """The host's `name` (a program name or path), symlinks kept; DistributeError when there is none."""
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SEARCH_PATH)
    if found is None:
        raise DistributeError(f"{name} is not installed on this host (looked in $PATH and {SEARCH_PATH})")
    return Path(found)


def libraries(program: Path) -> tuple[Library, ...]:
    """The shared libraries `program` loads, the loader included; () for a static program."""
    try:
        done = subprocess.run(["ldd", str(program)], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DistributeError(f"cannot list the libraries of {program} with ldd: {exc}") from None
    if done.returncode != 0:
        if "not a dynamic executable" in done.stdout + done.stderr:
            return ()
        raise DistributeError(f"ldd {program} failed: {done.stderr.strip() or done.returncode}")
    found: list[Library] = []
    for line in done.stdout.splitlines():
        if missing := _MISSING.match(line):
            raise DistributeError(f"{program} needs {missing['name']}, which this host does not have")
        if resolved := _RESOLVED.match(line):
            found.append(Library(resolved["name"], Path(resolved["path"])))
        elif loader := _LOADER.match(line):
            path = Path(loader["path"])
            found.append(Library(path.name, path, loader=True))
    return tuple(found)


def copy_file(source: Path, dest: Path, mode: int = 0o644) -> None:
    """`source`'s bytes (symlinks followed) at `dest`, its directories made; `mode` set."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    dest.chmod(mode)


def file_key(path: Path) -> str:
    """What identifies a host file for a cache: its real path, size and mtime."""
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
