"""How many shards a run gets: suite.shards, or "auto" from the host's cores and memory."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.run import shard_count as module
from nixvmd.run.shard_count import (
    HOST_HEADROOM_MIN,
    QEMU_OVERHEAD,
    auto_shards,
    mem_available,
    shard_count,
)

GIB = 1 << 30


def test_cores_give_one_shard_per_vm_cpus() -> None:
    assert auto_shards(16, 2, GIB, 256 * GIB, 100) == 8
    assert auto_shards(16, 3, GIB, 256 * GIB, 100) == 5
    assert auto_shards(2, 4, GIB, 256 * GIB, 100) == 1


@pytest.mark.parametrize("available", [0, GIB, 3 * GIB, 7 * GIB, 20 * GIB, 64 * GIB])
@pytest.mark.parametrize("vm_memory", [512 << 20, 2 * GIB, 8 * GIB])
def test_memory_is_never_oversubscribed_and_the_host_keeps_headroom(available: int, vm_memory: int) -> None:
    shards = auto_shards(64, 1, vm_memory, available, 1000)

    headroom = max(HOST_HEADROOM_MIN, available // 4)
    if shards > 1:
        assert shards * (vm_memory + QEMU_OVERHEAD) <= available - headroom
    # One more would not fit.
    assert (shards + 1) * (vm_memory + QEMU_OVERHEAD) > available - headroom
    assert shards >= 1


def test_never_more_shards_than_tests_and_at_least_one() -> None:
    assert auto_shards(64, 1, GIB, 256 * GIB, 3) == 3
    assert auto_shards(64, 1, GIB, 256 * GIB, 0) == 1


def test_unknown_memory_allows_one_vm() -> None:
    assert auto_shards(64, 1, GIB, None, 100) == 1


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16318440 kB\nMemFree:  1 kB\nMemAvailable:    8000000 kB\n")

    assert mem_available(meminfo) == 8000000 * 1024
    assert mem_available(tmp_path / "missing") is None
    assert mem_available() is not None  # this host's own


def test_a_number_of_shards_is_kept_but_never_above_the_tests() -> None:
    config = parse_config('[kernel]\ntree = "/k"\n[suite]\nshards = 4\n', name="n.toml", base=Path("/tmp"))

    assert shard_count(config, 10) == 4
    assert shard_count(config, 2) == 2
    one = dataclasses.replace(config, suite=dataclasses.replace(config.suite, shards=1))
    assert shard_count(one, 10) == 1


def test_auto_asks_this_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = parse_config(
        '[kernel]\ntree = "/k"\n[vm]\ncpus = 2\nmemory = "1G"\n[suite]\nshards = "auto"\n',
        name="n.toml",
        base=Path("/tmp"),
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: 16777216 kB\n")  # 16 GiB: 12 GiB for guests of 1.25 GiB
    monkeypatch.setattr(module, "MEMINFO", meminfo)
    monkeypatch.setattr(os, "cpu_count", lambda: 32)

    assert shard_count(config, 100) == 9
    assert shard_count(config, 4) == 4
