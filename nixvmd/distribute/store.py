"""The Nix store as nixvmd uses it: add a file or tree (content-addressed), ask what is valid.

Everything a shard's derivation names is added here with `nix-store --add`: the same bytes
under the same name are the same store path on every host, which is what makes a
derivation found again by its content. Each helper is one `nix-store` call; a failure is a
DistributeError with one sentence and Nix's own (distribute/nix_command.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nixvmd.distribute.nix_command import nix_stdout
from nixvmd.errors import DistributeError
from nixvmd.results.space import make_dirs, write_atomic

STORE_DIR = Path("/nix/store")


async def _add(path: Path, what: str) -> str:
    """`nix-store --add path`: the store path it printed."""
    return (await nix_stdout(["nix-store", "--add", str(path)], what)).strip()


async def add_to_store(path: Path, name: str) -> str:
    """`path` (a file or a directory) in the store as `name`: its store path.

    nix-store --add names the store path after the basename, so a path by another name is
    first linked (a file) or copied (a tree) into a temporary directory under that name.
    """
    if path.name == name:
        return await _add(path, f"adding {path} to the Nix store")
    with tempfile.TemporaryDirectory(prefix="nixvmd-add-") as tmp:
        staged = Path(tmp) / name
        await asyncio.to_thread(_stage, path, staged)
        return await _add(staged, f"adding {path} to the Nix store")


async def add_bytes(data: bytes, name: str, *, executable: bool = False) -> str:
    """`data` as a file `name` in the store: its store path."""
    with tempfile.TemporaryDirectory(prefix="nixvmd-add-") as tmp:
        staged = Path(tmp) / name
        staged.write_bytes(data)
        if executable:
            staged.chmod(0o755)
        return await _add(staged, f"adding {name} to the Nix store")


async def is_valid(store_path: str) -> bool:
    """True when `store_path` is a valid path of the local store (built or added, not collected)."""
    try:
        await nix_stdout(["nix-store", "--check-validity", store_path], "checking a store path")
    except DistributeError:
        return False
    return True


def _stage(path: Path, staged: Path) -> None:
    """`path` at `staged`: a tree copied, a file linked (else copied)."""
    try:
        if path.is_dir():
            shutil.copytree(path, staged, symlinks=True)
            return
        try:
            os.link(path, staged)
        except OSError:
            shutil.copy2(path, staged)
    except OSError as exc:
        raise DistributeError(f"cannot read {path} to add it to the Nix store: {exc.strerror}") from None


async def cached_tree(cache: Path, key: str, name: str, make: Callable[[Path], None]) -> str:
    """The store path of a tree nixvmd makes (`make(root)` fills the new directory `root`).

    Made and added once per `key` (what the tree is made from), remembered in the JSON file
    `cache` while the store still has it.
    """
    known = _read_json(cache)
    if known.get("key") == key and await is_valid(known.get("path", "")):
        return known["path"]
    with tempfile.TemporaryDirectory(prefix="nixvmd-tree-") as tmp:
        root = Path(tmp) / name
        try:
            await asyncio.to_thread(make, root)
        except OSError as exc:
            raise DistributeError(f"cannot make {name} for the Nix store: {exc}") from None
        path = await add_to_store(root, name)
    make_dirs(cache.parent, "creating the distribute cache directory")
    write_atomic(cache, json.dumps({"key": key, "path": path}) + "\n", f"remembering {name}")
    return path


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
