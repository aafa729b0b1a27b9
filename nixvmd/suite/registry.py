"""Suite kinds: which `SuiteRun` a config's `suite.kind` makes, and how a run is narrowed.

A kind is registered by name; a plugin module registers its own with `register_suite_kind`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nixvmd.config.extensions import add_name
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.results.record import TestResult
from nixvmd.suite.base import SuiteKind, SuiteRun
from nixvmd.suite.command import CommandSuite
from nixvmd.suite.kunit import kselftest_suite, kunit_suite
from nixvmd.suite.xfstests import XfstestsSuite
from nixvmd.suite.xfstests.suite import planned_tests


class SuiteKindBase:
    """Defaults for a suite kind: narrowing changes nothing in the config (the suite sees the tests)."""

    name = ""

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        raise NotImplementedError

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        """`config` for a run of `tests` only; ConfigError when this kind cannot take them."""
        return config

    def split(self, config: Config, n: int) -> list[Config]:
        """`config` split into `n` shards that together run the whole suite: a hook for later."""
        raise NotImplementedError(f"suite kind {self.name!r} cannot be split into shards yet")


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


class XfstestsKind(SuiteKindBase):
    """fstests' check; `--tests` are exactly the tests check runs."""

    name = "xfstests"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return XfstestsSuite(config.xfstests, config.daemon.state_dir)

    def narrowed(self, config: Config, tests: tuple[str, ...]) -> Config:
        if not tests:
            return config
        return dataclasses.replace(config, xfstests=dataclasses.replace(config.xfstests, args=tests))


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


def make_suite(config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
    """A fresh SuiteRun for one run of `config`'s suite (`tests`: only those, see with_tests)."""
    return suite_kind(config).from_config(config, tests)


def split_tests(config: Config, n: int, previous: Sequence[TestResult] = ()) -> list[tuple[str, ...]]:
    """The test lists of up to `n` shards that together are the whole run; [] when it cannot be split.

    TEMPORARY (branch `shards`): explicit `xfstests.args` test names dealt round-robin, until
    the `split` branch's SuiteKind.split (fstests' own selection, LPT on durations) replaces it.
    """
    if config.suite.kind != "xfstests" or n < 2:
        return []
    tests = planned_tests(config.xfstests)
    if tests is None or len(tests) < 2:
        return []
    return [tuple(tests[k::n]) for k in range(min(n, len(tests)))]
