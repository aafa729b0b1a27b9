"""same_split: the same run inputs get the shard lists they had, in their order; new inputs a fresh split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nixvmd.distribute.splits import KEEP, SPLITS, same_split, split_key
from nixvmd.suite.lpt import lpt
from nixvmd.suite.schedule import first

TESTS = ["generic/001", "generic/002", "generic/004"]


def _split(durations: dict[str, float], early: list[str]) -> list[tuple[str, ...]]:
    """The daemon's split (runs.py shard_lists): LPT on durations, each shard with `early` first."""
    return [tuple(first(shard, early)) for shard in lpt(TESTS, durations, 2)]


def test_the_same_inputs_again_keep_their_split_and_order_though_durations_and_failures_moved(
    tmp_path: Path,
) -> None:
    kernel_a = split_key("inputs-a", ())
    kernel_b = split_key("inputs-b", ())
    before = _split({}, [])
    # What the previous run measured and failed would split and order the same tests otherwise.
    now = _split({"generic/002": 3.0, "generic/001": 1.0, "generic/004": 1.0}, ["generic/004"])
    assert now != before

    assert same_split(tmp_path, kernel_a, before) == before
    assert same_split(tmp_path, kernel_a, now) == before, "the same inputs: the same derivations"
    assert same_split(tmp_path, kernel_b, now) == now, "a new kernel: a fresh, balanced split"
    assert same_split(tmp_path, kernel_b, before) == now
    assert same_split(tmp_path, kernel_a, now) == before, "each key keeps its own"


def test_a_narrowed_run_is_another_key() -> None:
    assert split_key("inputs", ()) != split_key("inputs", ("generic/001", "generic/002"))
    assert split_key("inputs", ("generic/001",)) == split_key("inputs", ("generic/001",))


def test_lists_that_no_longer_hold_the_runs_tests_are_split_anew(tmp_path: Path) -> None:
    key = split_key("inputs", ())
    same_split(tmp_path, key, [("generic/001",), ("generic/002",)])

    grown = [("generic/001", "generic/003"), ("generic/002",)]  # a test came into the tree

    assert same_split(tmp_path, key, grown) == grown
    assert same_split(tmp_path, key, [("generic/002", "generic/003"), ("generic/001",)]) == grown


def test_the_memory_outlives_the_process_and_keeps_the_newest_keys(tmp_path: Path) -> None:
    for i in range(KEEP + 1):
        same_split(tmp_path, f"key{i}", [(f"t{i}",), ("u",)])

    kept = json.loads((tmp_path / SPLITS).read_text())["splits"]

    assert len(kept) == KEEP and "key0" not in kept and kept[f"key{KEEP}"] == [[f"t{KEEP}"], ["u"]]
    assert same_split(tmp_path, "key1", [("u",), ("t1",)]) == [("t1",), ("u",)]


def test_an_unreadable_memory_splits_afresh_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / SPLITS).parent.mkdir(parents=True)
    (tmp_path / SPLITS).write_text("{not json")
    shards: list[tuple[str, ...]] = [("generic/002",), ("generic/001",)]

    assert same_split(tmp_path, "key", shards) == shards
    assert "unreadable" in caplog.text
    assert same_split(tmp_path, "key", [("generic/001",), ("generic/002",)]) == shards
