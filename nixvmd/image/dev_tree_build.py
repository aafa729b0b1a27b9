"""xfstests.build: the user's build command, run in xfstests.dev_tree before a run whose tree changed.

Scripts in the tree need no build (the guest reads them through the share); what does
(src/, ltp/) is built on the host by the user's command, e.g. `make -j$(nproc)`. Whether
the tree changed is told by a stamp: every file's path, size and modification time (.git
left out), a walk of a few thousand entries in an fstests tree. The stamp taken after the
last good build is kept in state_dir, so a daemon restart does not build again either; a
failed or cancelled build keeps none, so the next run tries again.

The command runs by `sh -c` in its own process group, its output line by line to the
daemon's log (`nixvmctl logs -f`) and to the run's build.log; a cancelled run (a newer
change) kills the group. A failure is an ImageBuildError naming the command: the run ends
`error`, like a failed image build, never blamed on the kernel.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import run_nix
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.space import make_dirs, write_atomic
from nixvmd.results.store import RunStore

log = logging.getLogger("nixvmd")

STAMP_FILE = Path("xfstests") / "dev-tree-build.json"
BUILD_LOG = "build.log"


def tree_stamp(tree: Path) -> str:
    """A digest of every file's path, size and mtime under `tree` (.git left out), in path order."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed while walking: the next stamp sees the tree as it settles
            digest.update(f"{os.path.relpath(path, tree)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def dev_tree_identity(config: Config) -> str:
    """What a run key adds for the dev tree the guest gets: its stamp ("" without one), so a
    tree edited while nixvmd was stopped is not taken for one already tested."""
    tree = config.xfstests.dev_tree
    if tree is None or str(config.suite.kind) != "xfstests":
        return ""
    return f" fstests:{tree_stamp(tree)}"


def _remembered(stamp_file: Path) -> dict[str, str]:
    try:
        data = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# Where a build writes: what changes there while the tree is as nixvmd's last build left it
# is that build's own output, not news.
BUILT_AREAS = ("src", "ltp")


def without_own_build(config: Config, paths: list[str]) -> list[str]:
    """`paths` (changed, relative to the dev tree) without the helpers nixvmd's own
    xfstests.build made: when the tree's stamp is still the one its last good build left,
    changes under src/ and ltp/ are that build's (tests/ and common/ changes always count)."""
    tree, command = config.xfstests.dev_tree, config.xfstests.build
    if tree is None or not command or not any(_built(p) for p in paths):
        return paths
    remembered = _remembered(config.daemon.state_dir / STAMP_FILE)
    if remembered.get("tree") != str(tree) or remembered.get("stamp") != tree_stamp(tree):
        return paths
    return [p for p in paths if not _built(p)]


def _built(relative: str) -> bool:
    return relative.split("/", 1)[0] in BUILT_AREAS


async def build_dev_tree(
    config: Config, run_dir: Path, on_line: Callable[[str], None], on_start: Callable[[], None] = lambda: None
) -> bool:
    """Run xfstests.build in xfstests.dev_tree if the tree changed since its last good build
    (`on_start` is called first).

    True when it ran (and succeeded); False when there is nothing to build or nothing
    changed. ImageBuildError when the command fails; its output is in `run_dir`/build.log.
    """
    tree, command = config.xfstests.dev_tree, config.xfstests.build
    if tree is None or not command or str(config.suite.kind) != "xfstests":
        return False
    stamp_file = config.daemon.state_dir / STAMP_FILE
    wanted = {"tree": str(tree), "build": command}
    if _remembered(stamp_file) == {**wanted, "stamp": await asyncio.to_thread(tree_stamp, tree)}:
        return False
    on_start()
    with (run_dir / BUILD_LOG).open("w", encoding="utf-8") as build_log:

        def line(text: str) -> None:
            build_log.write(text + "\n")
            build_log.flush()
            on_line(text)

        line(f"$ {command}")
        status, lines = await run_nix(["sh", "-c", command], tree, None, line)
    if status != 0:
        last = next((text for text in reversed(lines) if text.strip()), "no output")
        raise ImageBuildError(
            f"xfstests.build `{command}` failed in {tree} (exit status {status}): {last.strip()} "
            f"(the whole output is in {BUILD_LOG})"
        )
    stamp = await asyncio.to_thread(tree_stamp, tree)
    make_dirs(stamp_file.parent, "creating the xfstests state directory")
    write_atomic(stamp_file, json.dumps({**wanted, "stamp": stamp}), "remembering the dev tree's build")
    return True


async def build_for_run(
    config: Config, record: RunRecord, run_dir: Path, store: RunStore, phase: Callable[[str], None]
) -> bool:
    """`build_dev_tree` before `record`'s run, its lines in the daemon's log, the run's `phase`
    "building" while it runs; False when it failed, and the record then ended `error` with the
    failure as its reason (saved)."""

    def on_line(text: str) -> None:
        log.info("xfstests.build: %s", text)

    try:
        if await build_dev_tree(config, run_dir, on_line, lambda: phase("building")):
            log.info("run %s: xfstests.build done", record.id)
            phase("booting")
    except ImageBuildError as exc:
        record.outcome, record.reason = Outcome.ERROR, str(exc)
        record.finished_at = time.time()
        store.save(record)
        return False
    return True
