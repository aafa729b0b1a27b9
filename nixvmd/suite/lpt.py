"""Tests split into shards longest-processing-time first: longest test first, to the least loaded shard."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def lpt(tests: Sequence[str], durations: Mapping[str, float], n: int) -> list[list[str]]:
    """`tests` split into at most `n` non-empty lists whose total durations are close.

    A test's duration is `durations[test]`; one not known (or not a usable number) counts
    the median of the known ones, and with none known every test counts the same. Longest
    first, each to the list with the least total so far (ties: the fewer tests, then the
    earlier list); equal durations go by name, so the same input gives the same split.
    Each list keeps the order of `tests`; a test named twice is placed once; never more
    lists than tests. ValueError when `n` is below 1.
    """
    if n < 1:
        raise ValueError(f"cannot split tests into {n} shards")
    unique = list(dict.fromkeys(tests))
    known = {t: float(durations[t]) for t in unique if _usable(durations.get(t))}
    typical = statistics.median(known.values()) if known else 1.0
    cost = {t: max(0.0, known.get(t, typical)) for t in unique}
    count = min(n, len(unique))
    loads = [0.0] * count
    shards: list[list[str]] = [[] for _ in range(count)]
    for test in sorted(unique, key=lambda t: (-cost[t], t)):
        least = min(range(count), key=lambda i: (loads[i], len(shards[i]), i))
        shards[least].append(test)
        loads[least] += cost[test]
    position = {t: i for i, t in enumerate(unique)}
    return [sorted(shard, key=position.__getitem__) for shard in shards]


def _usable(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
