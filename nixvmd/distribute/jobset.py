"""`nixvmctl export --jobset DIR`: the current kernel's shards as one Nix expression.

DIR/default.nix is an attribute set, one derivation per shard (`shard0`, `shard1`, ...),
the same derivations the nix engine would build for a run now: Hydra (a jobset whose
expression is DIR) or `nix-build DIR -A shard0` can build them without the daemon. Its
inputs are named with `builtins.storePath`, so the machine that evaluates it needs them in
its store (this host, or one they were copied to: `nix-copy-closure --to HOST $(nix-instantiate DIR)`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import shard_expression, shard_inputs
from nixvmd.results.space import make_dirs, write_atomic
from nixvmd.run.shard_count import shard_count
from nixvmd.suite.registry import split_tests
from nixvmd.watch.kernel_image import read_kernel_image

FILE_NAME = "default.nix"


def jobset_shards(config: Config) -> list[tuple[str, ...]]:
    """The test lists of a run's shards as the daemon would split it now; [()] for one VM."""
    n = shard_count(config, sys.maxsize)
    shards = split_tests(config, n) if n >= 2 else []
    return shards if len(shards) >= 2 else [()]


async def write_jobset(config: Config, directory: Path) -> tuple[Path, int]:
    """Write DIR/default.nix for `config`'s current kernel image: the file and how many shards."""
    kernel = read_kernel_image(config.kernel_image)
    state_dir = config.daemon.state_dir
    shards = jobset_shards(config)
    parts = []
    for k, tests in enumerate(shards):
        inputs = await shard_inputs(config, kernel, tests, k, state_dir)
        expression = shard_expression(inputs).rstrip("\n").replace("\n", "\n  ")
        listed = " ".join(tests) or "the whole run"
        parts.append(f"  # {listed}\n  shard{k} = {expression};\n")
    header = f"# nixvmd shards of {kernel.version} ({kernel.path}); written by nixvmctl export --jobset\n"
    make_dirs(directory, "creating the jobset directory")
    target = directory / FILE_NAME
    write_atomic(target, header + "{\n" + "".join(parts) + "}\n", "writing the jobset")
    return target, len(shards)
