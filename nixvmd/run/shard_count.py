"""How many shards (VMs at once) a run gets: `suite.shards`, or for "auto" what the host can carry."""

from __future__ import annotations

import os
from pathlib import Path

from nixvmd.config.schema import Config

HOST_HEADROOM_FRACTION = 0.25
"""The share of the available memory left to the host (page cache, nixvmd, the desktop)."""
HOST_HEADROOM_MIN = 1 << 30
"""...and never less than this."""
QEMU_OVERHEAD = 256 << 20
"""What a QEMU process takes beyond its guest's memory (its own heap, virtiofsd, buffers)."""
MEMINFO = Path("/proc/meminfo")


def auto_shards(host_cpus: int, vm_cpus: int, vm_memory: int, mem_available: int | None, tests: int) -> int:
    """The shards "auto" means: as many VMs as the host's cores give `vm_cpus` each, as many as
    its memory carries without oversubscribing it, and no more than there are tests; at least 1.

    Memory: each VM counts `vm_memory` plus QEMU_OVERHEAD, out of `mem_available` (bytes,
    MemAvailable) less the host's headroom (HOST_HEADROOM_FRACTION of it, at least
    HOST_HEADROOM_MIN), so the host never swaps for its guests. `mem_available` None (not
    known) allows one VM, which is what a run without shards takes anyway.
    """
    by_cpus = max(1, host_cpus // max(1, vm_cpus))
    by_memory = 1
    if mem_available is not None:
        headroom = max(HOST_HEADROOM_MIN, int(mem_available * HOST_HEADROOM_FRACTION))
        by_memory = max(1, (mem_available - headroom) // (vm_memory + QEMU_OVERHEAD))
    return max(1, min(by_cpus, by_memory, tests))


def mem_available(meminfo: Path | None = None) -> int | None:
    """MemAvailable in bytes from `meminfo` (/proc/meminfo); None when it cannot be read."""
    try:
        text = (meminfo or MEMINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        words = value.split()
        if name == "MemAvailable" and words and words[0].isdigit():
            return int(words[0]) * 1024
    return None


def shard_count(config: Config, tests: int) -> int:
    """The shards for a run of `tests` tests: `suite.shards` (no more than the tests), or "auto"
    from this host's cores and MemAvailable (auto_shards)."""
    shards = config.suite.shards
    if shards == "auto":
        return auto_shards(os.cpu_count() or 1, config.vm.cpus, config.vm.memory, mem_available(), tests)
    return max(1, min(shards, tests))
