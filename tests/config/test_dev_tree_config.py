"""xfstests.dev_tree, dev_tree_share and build: relative paths, defaults, and a tree that is not fstests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import DevTreeShare
from nixvmd.errors import ConfigError


def _load(tmp_path: Path, xfstests: str) -> object:
    return parse_config(f"[xfstests]\n{xfstests}\n", name="nixvmd.toml", base=tmp_path)


def _problems(tmp_path: Path, xfstests: str) -> str:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, xfstests)
    return str(error.value)


def test_the_tree_is_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    (tmp_path / "xfstests-dev").mkdir()
    (tmp_path / "xfstests-dev" / "check").write_text("#!/bin/bash\n")
    config = parse_config(
        '[xfstests]\ndev_tree = "xfstests-dev"\nbuild = "make -j$(nproc)"\ndev_tree_share = "9p"\n',
        name="nixvmd.toml",
        base=tmp_path,
    )
    assert config.xfstests.dev_tree == tmp_path / "xfstests-dev"
    assert config.xfstests.build == "make -j$(nproc)"
    assert config.xfstests.dev_tree_share is DevTreeShare.NINEP
    plain = parse_config("", name="nixvmd.toml", base=tmp_path)
    assert (plain.xfstests.dev_tree, plain.xfstests.build) == (None, "")
    assert plain.xfstests.dev_tree_share is DevTreeShare.AUTO


def test_a_tree_that_is_missing_or_not_fstests_is_one_sentence(tmp_path: Path) -> None:
    missing = _problems(tmp_path, 'dev_tree = "nowhere"')
    assert (
        f"xfstests.dev_tree: {tmp_path / 'nowhere'} does not exist; point it at your fstests tree" in missing
    )
    (tmp_path / "src").mkdir()
    no_check = _problems(tmp_path, 'dev_tree = "src"')
    assert f"xfstests.dev_tree: {tmp_path / 'src'} has no check script" in no_check


def test_a_build_needs_a_tree_and_the_share_is_one_of_two(tmp_path: Path) -> None:
    assert "xfstests.build: it runs in xfstests.dev_tree; set dev_tree too" in _problems(
        tmp_path, 'build = "make"'
    )
    assert "expected one of 'auto', 'virtiofs', '9p'" in _problems(tmp_path, 'dev_tree_share = "nfs"')
