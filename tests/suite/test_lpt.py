"""Longest-processing-time first: shards of close total duration, deterministic, never empty."""

from __future__ import annotations

import pytest

from nixvmd.suite.lpt import lpt


def _load(shard: list[str], durations: dict[str, float]) -> float:
    return sum(durations[t] for t in shard)


def test_known_durations_go_longest_first_to_the_least_loaded_shard() -> None:
    durations = {"a": 10.0, "b": 9.0, "c": 6.0, "d": 5.0, "e": 4.0, "f": 2.0}

    shards = lpt(list(durations), durations, 2)

    # 10 -> s0; 9 -> s1; 6 -> s1 (9 < 10); 5 -> s0 (10 < 15); 4 -> s0 (15 = 15: the earlier); 2 -> s1.
    assert shards == [["a", "d", "e"], ["b", "c", "f"]]
    assert sorted(_load(s, durations) for s in shards) == [17.0, 19.0]


def test_each_shard_keeps_the_order_it_was_given() -> None:
    durations = {"z/001": 1.0, "a/001": 5.0, "m/001": 1.0, "b/001": 5.0}

    shards = lpt(["z/001", "a/001", "m/001", "b/001"], durations, 2)

    for shard in shards:
        order = ["z/001", "a/001", "m/001", "b/001"]
        assert shard == [t for t in order if t in shard]
    assert sum(len(s) for s in shards) == 4


def test_unknown_durations_count_the_median_of_the_known_ones() -> None:
    # Median of 1, 2, 30 is 2: "new" weighs 2, not 30 (the mean would be 11).
    durations = {"a": 30.0, "b": 2.0, "c": 1.0}

    shards = lpt(["a", "b", "c", "new"], durations, 2)

    assert ["a"] in shards
    assert sorted(next(s for s in shards if "a" not in s)) == ["b", "c", "new"]


def test_with_nothing_known_every_test_weighs_the_same_and_names_break_ties() -> None:
    shards = lpt(["d", "c", "b", "a", "e"], {}, 2)

    assert shards == [["c", "a", "e"], ["d", "b"]]
    assert lpt(["d", "c", "b", "a", "e"], {}, 2) == shards


def test_never_more_shards_than_tests_and_none_empty() -> None:
    assert lpt(["a", "b"], {"a": 0.0, "b": 0.0}, 5) == [["a"], ["b"]]
    zero = lpt(["a", "b", "c", "d"], {t: 0.0 for t in "abcd"}, 3)
    assert len(zero) == 3 and all(zero)
    assert lpt([], {}, 3) == []


def test_a_test_named_twice_is_placed_once() -> None:
    shards = lpt(["a", "b", "a"], {"a": 3.0, "b": 1.0}, 4)

    assert shards == [["a"], ["b"]]


def test_unusable_durations_count_as_unknown() -> None:
    shards = lpt(["a", "b", "c"], {"a": float("nan"), "b": 4.0, "c": 4.0}, 3)

    assert sorted(map(tuple, shards)) == [("a",), ("b",), ("c",)]


def test_fewer_than_one_shard_is_refused() -> None:
    with pytest.raises(ValueError, match="0 shards"):
        lpt(["a"], {}, 0)
