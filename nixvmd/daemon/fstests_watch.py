"""The daemon's side of the fstests tree: what to watch in it, a burst settled into one decision,
and what the next run covers and why it starts.

The tree is `suite/xfstests/tree.py`'s `watched_tree`. Changes in it are settled by a quiet
period (`QUIET_S`, reset by every event under the tree, `MOST_S` at most), not by the
daemon's short `daemon.settle`: a `make` writes for seconds. The settled change waits in
`decided` until a run takes it; a tests-only change under `on_change = "changed"` narrows
that run as `nixvmctl run --tests` does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.image.dev_tree_build import without_own_build
from nixvmd.plan.planner import Changes
from nixvmd.suite.registry import with_tests
from nixvmd.suite.xfstests.select import read_group_list
from nixvmd.suite.xfstests.tree import (
    AREAS,
    CHECK,
    TreeChange,
    classify,
    count_directories,
    group_lists,
    is_group_list,
    matters,
    watched_tree,
)
from nixvmd.watch.inotify import FileChange
from nixvmd.watch.quiet import QuietPeriod

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")

QUIET_S = 1.0  # a burst in the tree is over after this long without an event
MOST_S = 30.0  # ... or this long after it began, however it goes on
MAX_WATCHED_DIRS = 2000  # fstests has ~100 directories; past this only tests/ and common/ are watched
REASONS = {
    "kernel": "new kernel",
    "config_runtime": "config changed",
    "config_image": "config changed",
    "image_inputs": "image inputs changed",
    "build_ended": "new image",
    "requested": "requested",
}
"""Why a run starts, for each kind of change (`current.reason`); the tree's change says its own."""
REQUESTED = Changes(requested=True)


class FstestsWatch:
    """The watched fstests tree: its targets, its pending changes and the decision they settle into."""

    def __init__(self, on_settled: Callable[[TreeChange], None]) -> None:
        self.root: Path | None = None
        self.config: Config | None = None
        self.decided: TreeChange | None = None  # settled, not yet taken by a run
        self.running: tuple[str, ...] = ()  # the tests of the last run started (): all
        self._on_settled = on_settled
        self._settle = QuietPeriod(QUIET_S, MOST_S)
        self._paths: dict[str, None] = {}
        self._targets: set[Path] = set()
        self._group_lists: dict[str, dict[str, tuple[str, ...]]] = {}  # as the last decision saw them
        self._timer: asyncio.TimerHandle | None = None

    def targets(self, config: Config) -> tuple[list[Path], list[Path]]:
        """The files and trees to watch for `config` (none when the tree is not watched)."""
        tree = watched_tree(config)
        root = Path(os.path.abspath(tree)) if tree is not None else None  # as the watch names paths
        if root != self.root:
            self._paths.clear()
            self._group_lists = group_lists(root) if root is not None else {}
        self.root, self.config = root, config
        if root is None:
            self._targets = set()
            return [], []
        areas: tuple[str, ...] = AREAS
        if count_directories(root, AREAS, MAX_WATCHED_DIRS) > MAX_WATCHED_DIRS:
            areas = ("tests", "common")
            log.warning(
                "%s has more than %d directories under %s; only tests/ and common/ are watched",
                root,
                MAX_WATCHED_DIRS,
                ", ".join(AREAS),
            )
        self._targets = {root / CHECK, *(root / area for area in areas)}
        return [root / CHECK], [root / area for area in areas]

    def note(self, change: FileChange) -> bool:
        """Take `change` if it is in the tree (True); a change that matters starts or extends a burst,
        any other event in the tree only extends one already going."""
        root = self.root
        if root is None or not str(change.path).startswith(f"{root}/"):
            return False
        relative = change.path.relative_to(root).as_posix()
        if change.path in self._targets or matters(relative):  # a target that came or went: everything
            self._paths[relative] = None
        elif not self._settle.pending:
            return True
        loop = asyncio.get_running_loop()
        deadline = self._settle.note(loop.time())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)
        return True

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        if not self._settle.due(loop.time()):
            self._timer = loop.call_at(self._settle.deadline(), self._fire)
            return
        paths, self._paths = list(self._paths), {}
        if self.config is not None:
            paths = without_own_build(self.config, paths)  # a run's xfstests.build wrote these
        paths = self._without_same_groups(paths)
        if not paths or self.config is None:
            return
        change = classify(paths, self.config.xfstests.on_change)
        self.decided = change if self.decided is None else self.decided | change
        self._on_settled(change)

    def _without_same_groups(self, paths: list[str]) -> list[str]:
        """`paths` without group lists written again with the same tests in the same groups
        (`make` regenerates them: a test edit and a build stay that test's change)."""
        kept = []
        for path in paths:
            if self.root is not None and is_group_list(path):
                members = read_group_list(self.root / path)
                if members == self._group_lists.get(path, {}):
                    continue
                self._group_lists[path] = members
            kept.append(path)
        return kept

    def take(self) -> TreeChange | None:
        """The settled change no run has taken yet; from now on there is none."""
        decided, self.decided = self.decided, None
        return decided

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def tree_settled(daemon: Daemon, change: TreeChange) -> None:
    """A burst in the tree settled: run on the current kernel (none yet: nothing, and the log says so)."""
    if daemon.kernel is None:
        daemon.fstests.take()
        log.info("fstests tree: %s; no kernel yet, nothing to run", change.reason)
        return
    log.info("fstests tree: %s", change.reason)
    daemon.spawn(daemon.apply(Changes(fstests=True, fstests_all=change.tests is None)))


def next_run(daemon: Daemon, changes: Changes, *, cancelled: bool) -> tuple[tuple[str, ...], str]:
    """The tests of the run `changes` start (() = the configured run) and why it starts.

    `nixvmctl run --tests` names its own. A change of the tree alone narrows the run to the
    tests it concerns (a tests-only change under `on_change = "changed"`); when it cancelled
    a narrowed run, the tests of that one are run too (a full run is not cancelled by a test
    edit: the planner runs the edit after it; were one cancelled, all of them). Anything else
    runs the configured set. A run that takes the tree's change leaves nothing waiting; a run
    narrowed by `--tests` leaves the change for the run that covers it.
    """
    requested, daemon.next_tests = daemon.next_tests, ()
    # A run narrowed to tests of its own leaves a tree change to the run that covers it.
    tree = daemon.fstests.take() if changes.fstests or not requested else None
    if tree is not None:
        daemon.after_run = Changes()  # this run covers what waited for the one in flight
    why = [text for key, text in REASONS.items() if getattr(changes, key)]
    if changes.fstests and tree is not None:
        why.append(tree.reason)
    reason = ", ".join(dict.fromkeys(why)) or "requested"
    tests: tuple[str, ...] = requested
    if not requested and changes == Changes(fstests=True) and tree is not None and tree.tests is not None:
        carried = daemon.fstests.running if cancelled else None
        if carried == ():
            reason += "; in full, as the run it cancelled"
        else:
            tests = tuple(dict.fromkeys((*(carried or ()), *tree.tests)))
        try:
            with_tests(daemon.config, tests)
        except ConfigError as exc:
            log.warning("the run cannot be narrowed to %s, it runs in full: %s", ", ".join(tests), exc)
            tests = ()
    daemon.fstests.running = tests
    return tests, reason


def taken_since(daemon: Daemon, changes: Changes) -> bool:
    """Whether `changes` is a change of the tree alone that a run has taken since (nothing waits any more)."""
    tree_only = Changes(fstests=True, fstests_all=True)
    return bool(changes) and changes | tree_only == tree_only and daemon.fstests.decided is None


def queued(daemon: Daemon) -> dict[str, Any] | None:
    """Status's `queued`: the tree change waiting for the full run in flight (its reason and tests)."""
    change = daemon.fstests.decided
    if not daemon.after_run or change is None:
        return None
    return {"reason": change.reason, "tests": list(change.tests or ())}
