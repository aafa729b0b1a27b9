"""Which suite a config asks for."""

from __future__ import annotations

from nixvmd.config.schema import Config, SuiteKind
from nixvmd.errors import ConfigError
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.command import CommandSuite
from nixvmd.suite.kunit import kselftest_suite, kunit_suite
from nixvmd.suite.xfstests import XfstestsSuite


def make_suite(config: Config) -> SuiteRun:
    """A fresh SuiteRun for one run of `config`'s suite."""
    kind = config.suite.kind
    if kind is SuiteKind.COMMAND:
        return CommandSuite(config.suite.command)
    if kind is SuiteKind.KUNIT:
        return kunit_suite()
    if kind is SuiteKind.KSELFTEST:
        return kselftest_suite(config.suite.command)
    if kind is SuiteKind.XFSTESTS:
        return XfstestsSuite(config.xfstests, config.daemon.state_dir)
    raise ConfigError([f"suite.kind = {kind.value!r} is not a suite nixvmd knows"])
