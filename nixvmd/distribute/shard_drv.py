"""The derivation side of a shard on Nix, as the engine sees it: instantiate a shard, replay its output.

The derivation (distribute/derivation.py: `instantiate_shard`, `ShardDerivation`) and the
replay of its output through the suite's own parsers (distribute/replay.py:
`replay_output`) are made beside the engine; this module is the one place the engine
names them. Until they are part of this tree, a shard on Nix ends `error` saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import DistributeError
from nixvmd.results.record import RunRecord
from nixvmd.run.listen import RunHooks
from nixvmd.watch.kernel_image import KernelImage

MISSING = 'shards as Nix derivations are not part of this nixvmd yet: set [distribute] engine = "local"'


@dataclass(frozen=True)
class ShardDerivation:
    """An instantiated shard: its .drv, the output that holds the results, the tests it runs."""

    drv_path: Path
    out_name: str
    tests: tuple[str, ...]


async def instantiate_shard(
    config: Config, kernel: KernelImage, tests: tuple[str, ...], shard: int, state_dir: Path
) -> ShardDerivation:
    """Shard `shard`'s derivation for `tests` on `kernel`, instantiated in the local store."""
    raise DistributeError(MISSING)


def replay_output(
    config: Config,
    out: Path,
    tests: Sequence[str],
    record: RunRecord,
    run_dir: Path,
    hooks: RunHooks | None = None,
) -> RunRecord:
    """Fill `record` from the Nix output `out` of the shard of `config` that ran `tests`."""
    raise DistributeError(MISSING)
