"""The [xfstests] section and image.share_host_root: values, defaults, disks, every problem reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import DiskConfig, SuiteKind, XfstestsConfig, XfstestsSection
from nixvmd.errors import ConfigError

XFSTESTS = """\
[image]
share_host_root = true

[suite]
kind = "xfstests"

[vm]
disks = [{ name = "extra", size = "64M" }]

[xfstests]
dir = "/var/lib/xfstests"
args = ["-g", "quick", "-x", "dangerous"]
run_sections = ["ext4"]
test_size = "2G"
scratch_size = "3G"
results_size = "256M"
hang_multiple = 5
hang_floor = "1m"
hang_ceiling = "2h"

[[xfstests.sections]]
name = "xfs_reflink"
fstyp = "xfs"
mkfs_options = "-m reflink=1"
mount_options = "-o noatime"
extra = { USE_EXTERNAL = "no", LOGWRITES_DEV = "/dev/null" }

[[xfstests.sections]]
name = "ext4"
fstyp = "ext4"
"""


def _parse(text: str) -> object:
    return parse_config(text, name="nixvmd.toml", base=Path("/project"))


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        _parse(text)
    return raised.value.problems


def test_xfstests_keys_give_typed_values_and_the_disks_join_vm_disks() -> None:
    config = parse_config(XFSTESTS, name="nixvmd.toml", base=Path("/project"))
    assert config.image.share_host_root is True
    assert config.suite.kind is SuiteKind.XFSTESTS
    x = config.xfstests
    assert x.dir == Path("/var/lib/xfstests")
    assert x.args == ("-g", "quick", "-x", "dangerous")
    assert x.run_sections == ("ext4",)
    assert (x.test_size, x.scratch_size, x.results_size) == (2 << 30, 3 << 30, 256 << 20)
    assert (x.hang_multiple, x.hang_floor, x.hang_ceiling) == (5.0, 60.0, 7200.0)
    assert x.sections == (
        XfstestsSection(
            "xfs_reflink",
            "xfs",
            "-m reflink=1",
            "-o noatime",
            (("USE_EXTERNAL", "no"), ("LOGWRITES_DEV", "/dev/null")),
        ),
        XfstestsSection("ext4", "ext4"),
    )
    assert config.vm.disks == (
        DiskConfig("extra", 64 << 20, "nixvmd-extra"),
        DiskConfig("xfstests-test", 2 << 30, "nixvmd-xfs-test"),
        DiskConfig("xfstests-scratch", 3 << 30, "nixvmd-xfs-scratch"),
        DiskConfig("xfstests-results", 256 << 20, "nixvmd-xfs-results"),
    )


def test_defaults_are_one_xfs_section_quick_group_and_no_disks_for_other_suites() -> None:
    config = parse_config("", name="nixvmd.toml", base=Path("/project"))
    assert config.image.share_host_root is False
    assert config.xfstests == XfstestsConfig()
    assert config.xfstests.sections == (XfstestsSection("xfs", "xfs"),)
    assert config.xfstests.args == ("-g", "quick")
    assert (config.xfstests.hang_multiple, config.xfstests.hang_floor, config.xfstests.hang_ceiling) == (
        10.0,
        300.0,
        3600.0,
    )
    assert config.vm.disks == ()
    xfs = parse_config('[suite]\nkind = "xfstests"\n', name="nixvmd.toml", base=Path("/project"))
    assert [d.name for d in xfs.vm.disks] == ["xfstests-test", "xfstests-scratch", "xfstests-results"]


def test_bad_xfstests_values_are_all_reported_with_their_lines() -> None:
    problems = _problems(
        """\
[image]
share_host_root = "yes"

[xfstests]
dir = "relative/path"
args = "-g quick"
test_size = "1M"
hang_multiple = 0
run_sections = ["nope"]
bogus = 1

[[xfstests.sections]]
name = "a"
fstyp = "XFS!"
mkfs_options = "-L 'label'"
extra = { lower = "x" }
colour = "red"

[[xfstests.sections]]
name = "a"
"""
    )
    text = "\n".join(problems)
    assert "nixvmd.toml:2: image.share_host_root: expected true or false" in text
    assert "nixvmd.toml:5: xfstests.dir: expected an absolute path in the guest" in text
    assert "nixvmd.toml:6: xfstests.args: expected a list of strings" in text
    assert "nixvmd.toml:7: xfstests.test_size: expected at least 16M" in text
    assert "nixvmd.toml:8: xfstests.hang_multiple: expected a number of at least 1" in text
    assert "xfstests.run_sections: no section named 'nope'" in text
    assert "nixvmd.toml:10: xfstests.bogus: unknown key" in text
    assert "xfstests.sections[0].fstyp: expected a file system type" in text
    assert "xfstests.sections[0].mkfs_options: local.config values cannot hold quotes" in text
    assert "xfstests.sections[0].extra: expected an upper-case shell variable name" in text
    assert "xfstests.sections[0].colour: unknown key" in text
    assert "xfstests.sections: the name 'a' is used twice" in text


def test_sections_must_be_tables() -> None:
    assert any(
        "expected one or more [[xfstests.sections]]" in p for p in _problems("[xfstests]\nsections = 3\n")
    )
