"""Which suite a config asks for."""

from __future__ import annotations

import dataclasses

from nixvmd.config.schema import Config, SuiteKind
from nixvmd.errors import ConfigError
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.command import CommandSuite
from nixvmd.suite.kunit import kselftest_suite, kunit_suite
from nixvmd.suite.xfstests import XfstestsSuite


def with_tests(config: Config, tests: tuple[str, ...]) -> Config:
    """`config` narrowed to `tests` for one run (nixvmctl run --tests).

    xfstests runs exactly those tests; KUnit gets them as `kunit.filter_glob` (one glob, as
    the kernel takes); command and kselftest suites see them in $NIXVMD_TESTS.
    """
    if not tests:
        return config
    kind = config.suite.kind
    if kind is SuiteKind.XFSTESTS:
        return dataclasses.replace(config, xfstests=dataclasses.replace(config.xfstests, args=tests))
    if kind is SuiteKind.KUNIT:
        if len(tests) != 1:
            raise ConfigError(["a kunit run takes one glob (kunit.filter_glob), e.g. 'ext4_*.*'"])
        cmdline = f"{config.kernel.cmdline} kunit.filter_glob={tests[0]}".strip()
        return dataclasses.replace(config, kernel=dataclasses.replace(config.kernel, cmdline=cmdline))
    return config


def make_suite(config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
    """A fresh SuiteRun for one run of `config`'s suite (`tests`: only those, see with_tests)."""
    kind = config.suite.kind
    if kind is SuiteKind.COMMAND:
        return CommandSuite(config.suite.command, tests)
    if kind is SuiteKind.KUNIT:
        return kunit_suite()
    if kind is SuiteKind.KSELFTEST:
        return kselftest_suite(config.suite.command, tests)
    if kind is SuiteKind.XFSTESTS:
        return XfstestsSuite(config.xfstests, config.daemon.state_dir)
    raise ConfigError([f"suite.kind = {kind.value!r} is not a suite nixvmd knows"])
