"""vm.disks entries with a path: relative to the config file, no size, one VM to write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import load_config, parse_config
from nixvmd.config.schema import DiskConfig, DiskFormat
from nixvmd.errors import ConfigError


def test_a_path_is_taken_from_the_config_files_directory_and_has_no_size(tmp_path: Path) -> None:
    text = '[vm]\ndisks = [{ name = "data", path = "images/data.qcow2", readonly = true }, { name = "s" }]\n'
    config = parse_config(text, name="c.toml", base=tmp_path)
    assert config.vm.disks == (
        DiskConfig("data", 0, "nixvmd-data", True, path=tmp_path / "images" / "data.qcow2"),
        DiskConfig("s", 1 << 30, "nixvmd-s"),
    )


def test_a_disk_with_both_a_size_and_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[vm]\ndisks = [{ path = "/dev/sdb4", size = "1G" }]\n', name="c.toml", base=tmp_path)
    assert str(caught.value) == (
        "c.toml:2: vm.disks[0]: give a disk either a size (a fresh image) or a path, not both"
    )


def test_shards_refuse_a_writable_path_disk_and_take_a_readonly_one(tmp_path: Path) -> None:
    disks = '[vm]\ndisks = [{ path = "/srv/a.img" }, { path = "/srv/b.img", readonly = true }]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(disks + "[suite]\nshards = 2\n", name="c.toml", base=tmp_path)
    assert caught.value.problems == [
        "c.toml:2: vm.disks[0]: /srv/a.img is writable and suite.shards = 2 may run several VMs at once "
        "that would all write it; set readonly = true or suite.shards = 1"
    ]
    ok = disks.replace('{ path = "/srv/a.img" }', '{ path = "/srv/a.img", readonly = true }')
    assert len(parse_config(ok + '[suite]\nshards = "auto"\n', name="c.toml", base=tmp_path).vm.disks) == 2


def test_config_check_refuses_a_path_that_does_not_exist(tmp_path: Path) -> None:
    config = tmp_path / "nixvmd.toml"
    config.write_text(f'[kernel]\ntree = "{tmp_path}"\n[vm]\ndisks = [{{ name = "d", path = "d.img" }}]\n')
    load_config(config)  # the daemon checks at run start: the disk may appear later
    with pytest.raises(ConfigError) as caught:
        load_config(config, on_disk=True)
    assert caught.value.problems == [
        f"{config}:4: vm.disks 'd': {tmp_path}/d.img does not exist; "
        "nixvmd attaches a path, never creates one"
    ]


def test_a_path_disks_format_is_raw_or_qcow2_and_only_a_path_disk_takes_one(tmp_path: Path) -> None:
    text = '[vm]\ndisks = [{ name = "p", path = "/dev/sdb4", format = "raw" }]\n'
    assert parse_config(text, name="c.toml", base=tmp_path).vm.disks[0].format is DiskFormat.RAW
    with pytest.raises(ConfigError) as caught:
        parse_config(text.replace('"raw"', '"vmdk"'), name="c.toml", base=tmp_path)
    assert "expected one of 'raw', 'qcow2', got 'vmdk'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config('[vm]\ndisks = [{ size = "1G", format = "qcow2" }]\n', name="c.toml", base=tmp_path)
    assert caught.value.problems == [
        "c.toml:2: vm.disks[0]: format is for a disk with a path; nixvmd's own images are raw"
    ]
