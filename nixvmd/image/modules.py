"""Kernel modules for the guest: find them in a lib/modules tree and order them by dependency."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import ImageBuildError

_MODULE_SUFFIXES = (".ko",)


@dataclass(frozen=True)
class ModuleSet:
    """Modules to load in order (dependencies first), as paths inside the modules tree."""

    root: Path
    ordered: tuple[Path, ...]
    builtin: frozenset[str]


def resolve_modules_dir(modules_dir: Path, release: str) -> Path:
    """The lib/modules/<release> directory meant by `modules_dir`.

    Accepts the release directory itself, a directory holding `<release>/`, or an install
    prefix holding `lib/modules/<release>/` (make modules_install INSTALL_MOD_PATH=...).
    """
    candidates = [modules_dir, modules_dir / release, modules_dir / "lib" / "modules" / release]
    for candidate in candidates:
        if (candidate / "modules.order").is_file() or (candidate / "modules.builtin").is_file():
            return candidate
    raise ImageBuildError(
        f"kernel.modules_dir {modules_dir} holds no modules for kernel {release}; point it at "
        'lib/modules/<version> (make modules_install INSTALL_MOD_PATH=...) or set it to ""'
    )


def module_name(path: Path | str) -> str:
    """The module name of a .ko file: its stem with '-' as '_'."""
    name = os.path.basename(str(path))
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("-", "_")


def read_depends(ko: Path) -> list[str]:
    """The `depends=` list in a module's .modinfo section (without needing modinfo or depmod)."""
    data = ko.read_bytes()
    for field_bytes in data.split(b"\0"):
        if field_bytes.startswith(b"depends="):
            value = field_bytes[len(b"depends=") :].decode("ascii", "replace")
            return [module_name(d) for d in value.split(",") if d]
    return []


def _index(root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(root / "kernel"):
        for filename in filenames:
            if filename.endswith(_MODULE_SUFFIXES):
                index.setdefault(module_name(filename), Path(dirpath) / filename)
    for dirpath, _, filenames in os.walk(root):
        if Path(dirpath).is_relative_to(root / "kernel"):
            continue
        for filename in filenames:
            if filename.endswith(_MODULE_SUFFIXES):
                index.setdefault(module_name(filename), Path(dirpath) / filename)
    return index


def _builtin(root: Path) -> frozenset[str]:
    path = root / "modules.builtin"
    if not path.is_file():
        return frozenset()
    return frozenset(module_name(line.strip()) for line in path.read_text().splitlines() if line)


def select_modules(root: Path, wanted: Sequence[str], optional: Sequence[str] = ()) -> ModuleSet:
    """The modules `wanted` (and those of `optional` that exist) with their dependencies, in load order.

    A wanted module that is built into the kernel is simply not needed; one that is
    neither built in nor present is an error naming it.
    """
    index = _index(root)
    builtin = _builtin(root)
    ordered: list[Path] = []
    placed: set[str] = set()

    def place(name: str, chain: tuple[str, ...]) -> None:
        if name in placed or name in builtin:
            return
        path = index.get(name)
        if path is None:
            needed_by = f" (needed by {chain[-1]})" if chain else ""
            raise ImageBuildError(
                f"module {name}{needed_by} is not in {root} nor built into the kernel; "
                "rebuild with it enabled or check kernel.modules_dir"
            )
        if name in chain:
            return
        for dep in read_depends(path):
            place(dep, (*chain, name))
        placed.add(name)
        ordered.append(path)

    for name in wanted:
        place(module_name(name), ())
    for name in optional:
        if module_name(name) in index:
            place(module_name(name), ())
    return ModuleSet(root=root, ordered=tuple(ordered), builtin=builtin)
