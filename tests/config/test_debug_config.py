"""[debug]: when a vmcore is taken (dump) and how many are kept (keep_dumps), each bad value one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config, DumpLimit, DumpPolicy
from nixvmd.daemon.tested import config_fingerprint
from nixvmd.errors import ConfigError
from nixvmd.plan.planner import Changes, classify_config_change


def _read(debug: str) -> Config:
    return parse_config(f'[kernel]\ntree = "/k"\n[debug]\n{debug}\n', name="nixvmd.toml", base=Path("/tmp"))


def test_a_crash_is_dumped_and_five_dumps_are_kept_by_default() -> None:
    debug = _read("").debug

    assert debug.dump is DumpPolicy.CRASH
    assert debug.keep_dumps == DumpLimit(count=5, size=None)


def test_dump_takes_its_three_policies_and_keep_dumps_a_count_or_a_size() -> None:
    assert _read('dump = "never"').debug.dump is DumpPolicy.NEVER
    assert _read('dump = "always-on-timeout"').debug.dump is DumpPolicy.ALWAYS_ON_TIMEOUT
    assert _read("keep_dumps = 0").debug.keep_dumps == DumpLimit(count=0, size=None)
    assert _read('keep_dumps = "8G"').debug.keep_dumps == DumpLimit(count=None, size=8 << 30)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'dump = "sometimes"',
            "debug.dump: expected one of 'crash', 'never', 'always-on-timeout', got 'sometimes'",
        ),
        (
            "keep_dumps = -1",
            "debug.keep_dumps: expected a count of dumps like 5 or a size like '8G', got a number (-1)",
        ),
        (
            'keep_dumps = "lots"',
            "debug.keep_dumps: expected a count of dumps like 5 or a size like '8G', got a string ('lots')",
        ),
        ("keep_dumps = true", "debug.keep_dumps: expected a count of dumps like 5"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_key(line: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _read(line)

    (problem,) = caught.value.problems
    assert problem.startswith(f"nixvmd.toml:4: {expected}"), problem


def test_changing_debug_runs_nothing_again() -> None:
    old, new = _read(""), _read('dump = "never"\nkeep_dumps = "1G"')

    assert classify_config_change(old, new) == Changes()  # a reload starts no run
    assert config_fingerprint(old) == config_fingerprint(new)  # nor does the "tested" memory differ
