"""The QEMU a shard's derivation runs: the user's store path, or a bundle of the host's QEMU.

Without nixpkgs there is no QEMU in the store, so nixvmd puts the host's own there: the
binary, the shared libraries `ldd` names, the dynamic loader, its accelerator modules
(Debian builds TCG as one) and the firmware from the data directories `qemu -L help`
lists, all in one relocatable directory run as

    <bundle>/lib/ld.so --library-path <bundle>/lib <bundle>/libexec/<qemu> -L <bundle>/share/qemu

with QEMU_MODULE_DIR=<bundle>/lib/qemu. It is made once per QEMU binary (its path, size and
mtime) and remembered in state_dir/distribute/qemu-bundle.json while the store keeps it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.programs import copy_file, file_key, find_program, libraries
from nixvmd.distribute.store import cached_tree
from nixvmd.errors import DistributeError

FORMAT = "1"
CACHE_FILE = Path("distribute") / "qemu-bundle.json"
MODULE_GLOB = "accel-*.so"


@dataclass(frozen=True)
class StoreQemu:
    """A QEMU in the store: the path to name as an input, and the words that start it."""

    store_path: str
    argv: tuple[str, ...]


def bundle_argv(store_path: str, program: str) -> tuple[str, ...]:
    """How a bundle made here starts QEMU (`env` is the builder's busybox applet)."""
    return (
        "env",
        f"QEMU_MODULE_DIR={store_path}/lib/qemu",
        f"{store_path}/lib/ld.so",
        "--library-path",
        f"{store_path}/lib",
        f"{store_path}/libexec/{program}",
        "-L",
        f"{store_path}/share/qemu",
    )


async def store_qemu(config: Config) -> StoreQemu:
    """The QEMU for `config`'s shards: distribute.qemu's store path, else the bundle of vm.qemu."""
    if config.distribute.qemu:
        path = config.distribute.qemu.rstrip("/")
        return StoreQemu(path, (f"{path}/bin/qemu-system-x86_64",))
    return await qemu_bundle(config.vm.qemu, config.daemon.state_dir)


async def qemu_bundle(qemu: str, state_dir: Path) -> StoreQemu:
    """The store bundle of the host's `qemu` (a name or path), made when this QEMU has none yet."""
    binary = find_program(qemu).resolve()
    key = f"{FORMAT}:{file_key(binary)}"
    path = await cached_tree(
        state_dir / CACHE_FILE, key, f"nixvmd-{binary.name}", lambda root: make_bundle(binary, root)
    )
    return StoreQemu(path, bundle_argv(path, binary.name))


def make_bundle(binary: Path, root: Path) -> None:
    """Write the bundle of `binary` into the new directory `root` (see the module's docstring)."""
    copy_file(binary, root / "libexec" / binary.name, 0o755)
    modules = sorted(_module_dir(binary).glob(MODULE_GLOB))
    for module in modules:
        copy_file(module, root / "lib" / "qemu" / module.name, 0o755)
    for program in (binary, *modules):
        for lib in libraries(program):
            dest = root / "lib" / ("ld.so" if lib.loader else lib.name)
            if not dest.exists():
                copy_file(lib.path, dest, 0o755)
    share = root / "share" / "qemu"
    share.mkdir(parents=True)
    for directory in data_dirs(binary):
        for item in sorted(directory.iterdir()):
            target = share / item.name
            if target.exists() or not item.exists():  # the first directory wins; dangling links go
                continue
            if item.is_dir():
                shutil.copytree(item, target, ignore_dangling_symlinks=True)
            else:
                copy_file(item, target)


def data_dirs(binary: Path) -> list[Path]:
    """QEMU's firmware search path, as `qemu -L help` lists it (existing directories only)."""
    try:
        done = subprocess.run([str(binary), "-L", "help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DistributeError(f"cannot ask {binary} for its data directories: {exc}") from None
    dirs = [Path(line.strip()).resolve() for line in done.stdout.splitlines() if line.strip()]
    found = [d for d in dirs if d.is_dir()]
    if not found:
        raise DistributeError(f"{binary} -L help named no firmware directory that exists")
    return found


def _module_dir(binary: Path) -> Path:
    """Where a distribution's QEMU keeps its loadable modules (Debian: /usr/lib/<triplet>/qemu)."""
    for lib in libraries(binary):
        if lib.name.startswith("libc.so"):
            candidate = lib.path.resolve().parent / "qemu"
            if candidate.is_dir():
                return candidate
    return binary.parent.parent / "lib" / "qemu"
