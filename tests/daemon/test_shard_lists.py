"""Which runs go in shards: suite.shards > 1 and a split into 2+ lists, each with its early tests first."""

from __future__ import annotations

import shutil
from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.daemon.runs import shard_lists

TREE = Path(__file__).parents[1] / "fixtures" / "fstests"


def _config(state: Path, tree: Path, args: str, shards: str) -> Config:
    text = (
        f'[kernel]\ntree = "/k"\n[daemon]\nstate_dir = "{state}"\n'
        f'[suite]\nkind = "xfstests"\nshards = {shards}\n[xfstests]\ndir = "{tree}"\nargs = {args}\n'
    )
    return parse_config(text, name="nixvmd.toml", base=state)


def test_each_shard_starts_with_its_early_tests(tmp_path: Path) -> None:
    config = _config(tmp_path, TREE, '["generic/001", "generic/002", "generic/003", "generic/004"]', "2")

    shards = shard_lists(config, None, ["generic/004", "generic/003"])

    assert sorted(t for shard in shards for t in shard) == [f"generic/00{i}" for i in range(1, 5)]
    assert len(shards) == 2
    for shard in shards:
        early = [t for t in shard if t in ("generic/003", "generic/004")]
        assert list(shard[: len(early)]) == sorted(early, reverse=True)


def test_one_shard_or_one_test_is_a_run_in_one_vm(tmp_path: Path) -> None:
    assert shard_lists(_config(tmp_path, TREE, '["generic/001", "generic/002"]', "1"), None, []) == []
    assert shard_lists(_config(tmp_path, TREE, '["generic/001"]', "2"), None, []) == []


def test_args_the_split_refuses_leave_the_run_to_one_vm_and_check(tmp_path: Path) -> None:
    tree = tmp_path / "fstests"
    shutil.copytree(TREE, tree)
    for group_list in tree.glob("tests/*/group.list"):
        group_list.unlink()

    assert shard_lists(_config(tmp_path, tree, '["-g", "quick"]', "2"), None, []) == []
