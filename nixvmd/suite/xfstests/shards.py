"""An fstests run as shards: the args expanded as check would, split on the tests' previous durations.

Every shard runs its tests under all the run's sections, so a test's duration is one
section's (check.time keeps one per test; a previous run's results the longest of its
sections): the same measure for every test, which is all the split needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from nixvmd.config.schema import Config, XfstestsConfig
from nixvmd.errors import ConfigError
from nixvmd.results.record import TestResult
from nixvmd.suite.lpt import lpt
from nixvmd.suite.xfstests.results import read_check_time
from nixvmd.suite.xfstests.select import EXACT_ORDER, named_tests, run_options, select_tests

CHECK_TIME = Path("xfstests") / "check.time"
"""Where the suite keeps the tests' durations between runs, under daemon.state_dir."""


def run_fstyps(config: XfstestsConfig) -> list[str]:
    """The file systems of the sections that run (`run_sections`, else all of them)."""
    sections = [s for s in config.sections if not config.run_sections or s.name in config.run_sections]
    return list(dict.fromkeys(s.fstyp for s in sections or config.sections))


def known_durations(state_dir: Path, previous: Sequence[TestResult]) -> dict[str, float]:
    """Each test's seconds: check.time's, then the previous run's results (the longest section)."""
    durations = read_check_time(state_dir / CHECK_TIME)
    measured: dict[str, float] = {}
    for result in previous:
        if result.duration_s is not None:
            name = result.short_name
            measured[name] = max(measured.get(name, 0.0), result.duration_s)
    return durations | measured


def readable_tree(xfstests: XfstestsConfig) -> Path:
    """Where the host reads the tests the guest will run: `dev_tree` (the guest mounts it at
    `dir`), else `dir` (a host path too when the direct backend shares the host root)."""
    return xfstests.dev_tree or xfstests.dir


def split_xfstests(config: Config, n: int, previous: Sequence[TestResult]) -> list[tuple[str, ...]]:
    """The tests of `config`'s fstests run as up to `n` shards, each in check's order.

    [] when the tree is not readable here (no tests/ directory: a guest-only path), or
    when nothing is selected. ConfigError when the tree or the args are wrong (select_tests).
    """
    xfstests = config.xfstests
    tree = readable_tree(xfstests)
    if not (tree / "tests").is_dir():
        return []
    tests = select_tests(tree, xfstests.args, run_fstyps(xfstests))
    if not tests:
        return []
    durations = known_durations(config.daemon.state_dir, previous)
    return [tuple(shard) for shard in lpt(tests, durations, n)]


def check_order(config: Config) -> list[str] | None:
    """The tests check will run for `config`, in its order; None when nixvmd cannot tell here
    (the tree not readable on the host and the args not a plain list, or args check refuses)."""
    xfstests = config.xfstests
    try:
        tree = readable_tree(xfstests)
        if (tree / "tests").is_dir():
            return select_tests(tree, xfstests.args, run_fstyps(xfstests))
    except ConfigError:  # check will say what is wrong with them, in the run
        return None
    named = named_tests(xfstests.args)
    if named is None or EXACT_ORDER in xfstests.args:
        return named
    return sorted(named)


def narrowed_args(config: XfstestsConfig, tests: Sequence[str]) -> tuple[str, ...]:
    """check's args for a run of exactly `tests`, in that order: the options that do not
    choose tests (-T, -R, -s, ...), `--exact-order`, then the tests (each once)."""
    return (*run_options(config.args), EXACT_ORDER, *dict.fromkeys(tests))


def narrowed_config(config: Config, tests: Sequence[str]) -> Config:
    """`config` for a run of exactly `tests` (a shard, a resumed run, `nixvmctl run --tests`)."""
    xfstests = dataclasses.replace(config.xfstests, args=narrowed_args(config.xfstests, tests))
    return dataclasses.replace(config, xfstests=xfstests)
