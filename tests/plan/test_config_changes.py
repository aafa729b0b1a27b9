"""A config reload, classified for every section: what runs, what is rebuilt, what waits for a restart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nixvmd.config.declaration import ChangeKind
from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.config.settings import SECTIONS, changed_settings, section_settings
from nixvmd.plan.planner import Changes, LoopState, Step, classify_config_change, plan

BASE = """
[kernel]
tree = "/src/linux"
cmdline = "quiet"
modules = ["fs/xfs/xfs.ko"]

[image]
backend = "nix"

[vm]
memory = "1G"

[suite]
kind = "xfstests"

[xfstests]
args = ["-g", "quick"]
hang_floor = "5m"
on_change = "off"

[[xfstests.sections]]
name = "xfs"
mkfs_options = ""

[notify]
on = ["fail"]
command = ""

[daemon]
state_dir = "/tmp/nixvmd-state"
socket = "/tmp/nixvmd.sock"
settle = "50ms"
"""

RUN = Changes(config_runtime=True)
BUILD = Changes(config_image=True)
NOTHING = Changes()


def config_from(toml: str) -> Config:
    """A config parsed from `toml`, paths relative to one fixed directory."""
    return parse_config(toml, name="nixvmd.toml", base=Path("/project"))


def reload(old: str, new: str) -> tuple[Changes, dict[str, ChangeKind]]:
    """The planner's view and the changed keys of BASE edited from `old` to `new`."""
    assert old in BASE
    before, after = config_from(BASE), config_from(BASE.replace(old, new))
    return classify_config_change(before, after), changed_settings(before, after)


@pytest.mark.parametrize(
    ("old", "new", "changes", "keys"),
    [
        ('cmdline = "quiet"', 'cmdline = "debug"', RUN, {"kernel.cmdline": ChangeKind.RUNTIME}),
        ('tree = "/src/linux"', 'tree = "/src/linux"\nimage = "vmlinux"', RUN, {"kernel.image": "runtime"}),
        ('modules = ["fs/xfs/xfs.ko"]', "modules = []", BUILD, {"kernel.modules": ChangeKind.IMAGE}),
        ('backend = "nix"', 'backend = "nix"\nflake = ".#vm"', BUILD, {"image.flake": ChangeKind.IMAGE}),
        ('memory = "1G"', 'memory = "2G"', RUN, {"vm.memory": ChangeKind.RUNTIME}),
        ('kind = "xfstests"', 'kind = "xfstests"\ntimeout = "1h"', RUN, {"suite.timeout": "runtime"}),
        ('args = ["-g", "quick"]', 'args = ["generic/001"]', RUN, {"xfstests.args": ChangeKind.RUNTIME}),
        ('hang_floor = "5m"', 'hang_floor = "1m"', RUN, {"xfstests.hang_floor": ChangeKind.RUNTIME}),
        ('mkfs_options = ""', 'mkfs_options = "-m crc=1"', RUN, {"xfstests.sections": "runtime"}),
        ('on = ["fail"]', 'on = ["fail", "pass"]', NOTHING, {"notify.on": ChangeKind.REPORT}),
        ('command = ""', 'command = "notify-me"', NOTHING, {"notify.command": ChangeKind.REPORT}),
        ('settle = "50ms"', 'settle = "1s"', NOTHING, {"daemon.settle": ChangeKind.RESTART}),
        ('on_change = "off"', 'on_change = "changed"', NOTHING, {"xfstests.on_change": ChangeKind.WATCH}),
        ('"/tmp/nixvmd.sock"', '"/tmp/other.sock"', NOTHING, {"daemon.socket": ChangeKind.RESTART}),
    ],
)
def test_each_section_is_classified(old: str, new: str, changes: Changes, keys: dict[str, str]) -> None:
    assert reload(old, new) == (changes, keys)


def test_an_xfstests_size_change_is_a_runtime_change_of_its_disks_too() -> None:
    changes, keys = reload('hang_floor = "5m"', 'hang_floor = "5m"\ntest_size = "8G"')

    assert changes == RUN
    assert keys == {"xfstests.test_size": ChangeKind.RUNTIME, "vm.disks": ChangeKind.RUNTIME}


@pytest.mark.parametrize(
    ("state", "steps"),
    [
        (LoopState(have_kernel=True), (Step.START_RUN,)),
        (LoopState(have_kernel=True, running=True), (Step.CANCEL_RUN, Step.START_RUN)),
        (LoopState(have_kernel=True, image_builds=True), (Step.START_RUN,)),
    ],
)
def test_a_reload_that_changes_only_xfstests_args_starts_a_run(state: LoopState, steps: tuple[Step]) -> None:
    changes, _ = reload('args = ["-g", "quick"]', 'args = ["-g", "auto"]')

    assert plan(changes, state).steps == steps


@pytest.mark.parametrize(
    ("old", "new"), [('on = ["fail"]', 'on = ["crash"]'), ('settle = "50ms"', 'settle = "2s"')]
)
def test_notify_and_daemon_changes_start_nothing_even_during_a_run(old: str, new: str) -> None:
    changes, _ = reload(old, new)

    assert plan(changes, LoopState(have_kernel=True, running=True)).steps == ()


def test_every_declared_key_is_classified_by_its_declared_kind() -> None:
    base = config_from(BASE)
    expected = {
        ChangeKind.IMAGE: BUILD,
        ChangeKind.RUNTIME: RUN,
        ChangeKind.REPORT: NOTHING,
        ChangeKind.RESTART: NOTHING,
        ChangeKind.WATCH: NOTHING,
    }
    for table, setting in section_settings():
        section = dataclasses.replace(getattr(base, table.path), **{setting.name: object()})
        changed = dataclasses.replace(base, **{table.path: section})
        kind = table.change_of(setting)

        assert changed_settings(base, changed) == {f"{table.path}.{setting.name}": kind}
        assert classify_config_change(base, changed) == expected[kind], f"{table.path}.{setting.name}"


def test_the_sections_declare_the_kinds_the_loop_relies_on() -> None:
    kinds = {table.path: {table.change_of(s) for s in table.settings} for table in SECTIONS}

    assert kinds == {
        "kernel": {ChangeKind.RUNTIME, ChangeKind.IMAGE, ChangeKind.REPORT},  # kernel.build: bisect's
        "image": {ChangeKind.IMAGE},
        "vm": {ChangeKind.RUNTIME},
        "suite": {ChangeKind.RUNTIME},
        "xfstests": {ChangeKind.RUNTIME, ChangeKind.WATCH},
        "notify": {ChangeKind.REPORT},
        "daemon": {ChangeKind.RESTART},
        "distribute": {ChangeKind.RUNTIME},
        "bisect": {ChangeKind.REPORT},
        "debug": {ChangeKind.REPORT},  # what is kept of a run, not what it tests
    }
