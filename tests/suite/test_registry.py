"""Which suite a config asks for, and a run narrowed to some tests (nixvmctl run --tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.suite.registry import make_suite, with_tests


def _config(suite: str, extra: str = "") -> Config:
    return parse_config(
        f'[kernel]\ntree = "/k"\n[suite]\n{suite}\n{extra}', name="nixvmd.toml", base=Path("/tmp")
    )


def test_a_command_run_sees_the_chosen_tests_in_its_environment() -> None:
    config = _config('kind = "command"\ncommand = "./run.sh $NIXVMD_TESTS"')
    job = make_suite(config, ("a", "b")).job()
    assert ("NIXVMD_TESTS", "a b") in job.env
    assert make_suite(config).job().env == ()


def test_a_kunit_run_narrows_with_filter_glob_and_takes_one_glob() -> None:
    config = _config('kind = "kunit"', "")
    narrowed = with_tests(config, ("ext4_*.*",))
    assert narrowed.kernel.cmdline.split() == ["kunit.filter_glob=ext4_*.*"]
    assert config.kernel.cmdline == ""
    with pytest.raises(ConfigError, match="one glob"):
        with_tests(config, ("a.*", "b.*"))


def test_an_xfstests_run_runs_exactly_the_chosen_tests() -> None:
    config = _config(
        'kind = "xfstests"',
        '[xfstests]\ndir = "/var/lib/xfstests"\nargs = ["-g", "quick"]\n'
        '[[xfstests.sections]]\nname = "xfs"\nfstyp = "xfs"\n',
    )
    narrowed = with_tests(config, ("xfs/042", "generic/001", "xfs/042"))
    assert narrowed.xfstests.args == ("--exact-order", "xfs/042", "generic/001")
    assert with_tests(config, ()) is config
