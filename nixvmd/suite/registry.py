"""Suite kinds: which `SuiteRun` a config's `suite.kind` makes, how a run is narrowed and split into shards.

A kind is registered by name; a plugin module registers its own with `register_suite_kind`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from nixvmd.config.extensions import add_name
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.results.record import TestResult
from nixvmd.suite.base import SuiteKind, SuiteRun
from nixvmd.suite.command import CommandSuite
from nixvmd.suite.kunit import kselftest_suite, kunit_suite
from nixvmd.suite.lpt import lpt
from nixvmd.suite.schedule import first
from nixvmd.suite.xfstests import XfstestsSuite
from nixvmd.suite.xfstests.shards import check_order, narrowed_config, split_xfstests

TESTS_VARIABLE = "NIXVMD_TESTS"
"""The guest variable that hands a command its tests (command, kselftest)."""


class SuiteKindBase:
    """Defaults for a suite kind: narrowing changes nothing in the config (the suite sees the tests)."""

    name = ""

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        raise NotImplementedError

    def ordered(
        self, config: Config, tests: tuple[str, ...], early: Collection[str]
    ) -> tuple[Config, tuple[str, ...]]:
        """`config` and `tests` (after `narrowed`) with the `early` tests first: no order by default."""
        return config, tests

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        """`config` for a run of `tests` only; ConfigError when this kind cannot take them."""
        return config

    def split(self, config: Config, n: int, previous: Sequence[TestResult]) -> list[tuple[str, ...]]:
        """No shards: the run stays in one VM (KUnit's boot, a command)."""
        return []


class CommandKind(SuiteKindBase):
    """One shell command; `--tests` reach it in $NIXVMD_TESTS."""

    name = "command"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return CommandSuite(config.suite.command, tests)


class KunitKind(SuiteKindBase):
    """KUnit's KTAP from the boot; `--tests` is one `kunit.filter_glob`."""

    name = "kunit"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return kunit_suite()

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        if not tests:
            return config
        if len(tests) != 1:
            raise ConfigError(["a kunit run takes one glob (kunit.filter_glob), e.g. 'ext4_*.*'"])
        cmdline = f"{config.kernel.cmdline} kunit.filter_glob={tests[0]}".strip()
        return dataclasses.replace(config, kernel=dataclasses.replace(config.kernel, cmdline=cmdline))


class KselftestKind(SuiteKindBase):
    """The TAP a command prints; `--tests` reach it in $NIXVMD_TESTS."""

    name = "kselftest"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return kselftest_suite(config.suite.command, tests)

    def ordered(
        self, config: Config, tests: tuple[str, ...], early: Collection[str]
    ) -> tuple[Config, tuple[str, ...]]:
        """$NIXVMD_TESTS with the early tests first (the command runs them in that order)."""
        return config, tuple(first(tests, early))

    def split(self, config: Config, n: int, previous: Sequence[TestResult]) -> list[tuple[str, ...]]:
        """The previous run's tests, when the command takes its tests from $NIXVMD_TESTS."""
        if TESTS_VARIABLE not in config.suite.command or not previous:
            return []
        durations = {t.name: t.duration_s for t in previous if t.duration_s is not None}
        return [tuple(shard) for shard in lpt([t.name for t in previous], durations, n)]


class XfstestsKind(SuiteKindBase):
    """fstests' check; `--tests` are exactly the tests check runs."""

    name = "xfstests"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return XfstestsSuite(config.xfstests, config.daemon.state_dir)

    def ordered(
        self, config: Config, tests: tuple[str, ...], early: Collection[str]
    ) -> tuple[Config, tuple[str, ...]]:
        """The tests check would run with the early ones first, run as a narrowed run (`--exact-order`).

        The rest keep check's order. Left to check when nothing moves, or when nixvmd cannot
        expand the args here (the tree not readable on the host and not a plain list).
        """
        listed = check_order(config)
        if listed is None:
            return config, tests
        order = first(listed, early)
        if order == listed:
            return config, tests
        return narrowed_config(config, order), tests

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        """check runs exactly `tests`, in that order (`--exact-order`), with the user's other options."""
        return narrowed_config(config, tests) if tests else config

    def split(self, config: Config, n: int, previous: Sequence[TestResult]) -> list[tuple[str, ...]]:
        """The args expanded as check would (the tree readable here), split on previous durations."""
        return split_xfstests(config, n, previous)


_KINDS: dict[str, SuiteKind] = {
    k.name: k for k in (CommandKind(), KunitKind(), KselftestKind(), XfstestsKind())
}


def register_suite_kind(kind: SuiteKind) -> None:
    """Make `suite.kind = kind.name` use `kind` (a plugin module calls this when imported)."""
    _KINDS[kind.name] = kind
    add_name("suite.kind", kind.name)


def suite_kind(config: Config) -> SuiteKind:
    """The kind `config.suite.kind` names; ConfigError when none is registered by that name."""
    name = str(config.suite.kind)
    kind = _KINDS.get(name)
    if kind is None:
        raise ConfigError([f"suite.kind = {name!r} is not a suite nixvmd knows ({', '.join(_KINDS)})"])
    return kind


def suite_name(config: Config) -> str:
    """The name of `config`'s suite, as run records carry it (no suite is made)."""
    return suite_kind(config).name


def with_tests(config: Config, tests: tuple[str, ...]) -> Config:
    """`config` narrowed to `tests` for one run (nixvmctl run --tests); unchanged without tests."""
    return suite_kind(config).narrowed(config, tests) if tests else config


def run_first(
    config: Config, tests: tuple[str, ...], early: Collection[str]
) -> tuple[Config, tuple[str, ...]]:
    """`config` and `tests` of a run (after `with_tests`) with `early` first, as its kind can order."""
    if not early:
        return config, tests
    return suite_kind(config).ordered(config, tests, early)


def split_tests(config: Config, n: int, previous: Sequence[TestResult] = ()) -> list[tuple[str, ...]]:
    """The test lists of up to `n` shards of `config`'s run ([]: it runs in one VM); see SuiteKind.split."""
    return suite_kind(config).split(config, n, previous)


def make_suite(config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
    """A fresh SuiteRun for one run of `config`'s suite (`tests`: only those, see with_tests)."""
    return suite_kind(config).from_config(config, tests)
