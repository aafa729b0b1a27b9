"""suite.shards and suite.resume_limit: their defaults, "auto", and a bad value in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError


def _read(suite: str) -> Config:
    return parse_config(f'[kernel]\ntree = "/k"\n[suite]\n{suite}\n', name="nixvmd.toml", base=Path("/tmp"))


def test_one_shard_and_three_resumes_by_default() -> None:
    config = _read("")

    assert (config.suite.shards, config.suite.resume_limit) == (1, 3)


def test_shards_take_a_number_or_auto_and_resume_limit_zero() -> None:
    assert _read("shards = 4").suite.shards == 4
    assert _read('shards = "auto"').suite.shards == "auto"
    assert _read("resume_limit = 0").suite.resume_limit == 0


@pytest.mark.parametrize("value", ["0", "-2", '"many"', "1.5", "true", '"Auto"'])
def test_a_bad_shards_value_is_one_sentence_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _read(f"shards = {value}")

    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert "\n" not in problem
    expected = 'nixvmd.toml:4: suite.shards: expected a whole number of at least 1 or "auto", got '
    assert problem.startswith(expected)


def test_a_negative_resume_limit_is_refused() -> None:
    expected = r"suite.resume_limit: expected a whole number of 0 or more, got a number \(-1\)"
    with pytest.raises(ConfigError, match=expected):
        _read("resume_limit = -1")
