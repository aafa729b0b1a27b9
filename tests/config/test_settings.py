"""The key declarations: config.example.toml, the dataclasses and the reader all agree with them."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nixvmd.config.declaration import Table
from nixvmd.config.load import load_config, parse_config
from nixvmd.config.schema import NotifyEvent
from nixvmd.config.settings import SECTIONS, changed_settings
from nixvmd.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config.example.toml"
_HEADER = re.compile(r"^#?\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*$")
_COMMENTED_KEY = re.compile(r"^#\s?([A-Za-z_][A-Za-z0-9_]*\s*=.*)$")


def _rows_tables() -> list[Table]:
    return [s.convert for t in SECTIONS for s in t.settings if isinstance(s.convert, Table)]


def declared_keys() -> set[str]:
    """Every declared key as a dotted path; the keys of [[rows]] under their table key."""
    keys = {f"{t.path}.{s.name}" for t in SECTIONS for s in t.settings}
    return keys | {f"{t.path}.{s.name}" for t in _rows_tables() for s in t.settings}


def _keys_of(table: str, values: dict[str, Any]) -> set[str]:
    keys = set()
    for key, value in values.items():
        keys.add(f"{table}.{key}")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys |= {f"{table}.{key}.{k}" for row in value for k in row}
    return keys


def example_keys(text: str) -> tuple[set[str], set[str]]:
    """The keys the example sets, and the ones it shows commented out (e.g. `# flake = ""`)."""
    data = tomllib.loads(text)
    set_keys = {key for section, values in data.items() for key in _keys_of(section, values)}
    commented: set[str] = set()
    table = ""
    for line in text.splitlines():
        if header := _HEADER.match(line):
            table = header.group(1)
        elif (key := _COMMENTED_KEY.match(line)) is not None:
            try:
                values = tomllib.loads(key.group(1))
            except tomllib.TOMLDecodeError:
                continue  # prose that happens to hold an "="
            if table.count("."):  # a commented [[rows]] table: its keys belong to the table key
                commented |= {f"{table}.{k}" for k in values} | {table}
            else:
                commented |= _keys_of(table, values)
    return set_keys, commented


def test_the_example_shows_every_declared_key_and_only_declared_keys() -> None:
    set_keys, commented = example_keys(EXAMPLE.read_text())

    assert set_keys | commented == declared_keys()


def test_the_example_finds_commented_keys_and_rows() -> None:
    text = (
        '[vm]\n# disks = [{ name = "a", size = "1G" }]\n# we = "prose"?\n'
        '# [[xfstests.sections]]\n# fstyp = "x"\n'
    )

    assert example_keys(text) == (
        set(),
        {"vm.disks", "vm.disks.name", "vm.disks.size", "xfstests.sections", "xfstests.sections.fstyp"},
    )


def test_the_example_reads_as_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Its state_dir and socket are the defaults' own spelling with these variables.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")

    example = load_config(EXAMPLE)

    assert example == parse_config("", name="<empty>", base=EXAMPLE.parent)


def test_the_dataclasses_have_the_declared_keys_in_their_order() -> None:
    for table in (*SECTIONS, *_rows_tables()):
        assert isinstance(table.build, type)
        assert tuple(f.name for f in dataclasses.fields(table.build)) == table.names, table.path


def _assert_dataclass_defaults(read: Any) -> None:
    for field in dataclasses.fields(read):
        if field.default is not dataclasses.MISSING:
            assert getattr(read, field.name) == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert getattr(read, field.name) == field.default_factory(), field.name


def test_the_dataclasses_own_defaults_are_the_declared_defaults() -> None:
    # With the config's directory ".", relative defaults stay as written, like the dataclasses'.
    config = parse_config("", name="<empty>", base=Path("."))

    for table in SECTIONS:
        _assert_dataclass_defaults(getattr(config, table.path))
    _assert_dataclass_defaults(config.xfstests.sections[0])
    assert config.image.nix_file == Path("vm.nix")
    assert config.kernel.tree == Path(".")


def test_the_built_in_config_is_the_declared_defaults_but_for_the_sample_kernel_and_smoke_suite() -> None:
    built_in = load_config(None)

    assert set(changed_settings(parse_config("", name="<empty>", base=Path.cwd()), built_in)) == {
        "kernel.tree",
        "kernel.image",
        "kernel.modules_dir",
        "vm.memory",
        "vm.disks",
        "suite.command",
        "suite.timeout",
    }


def test_every_declared_key_has_a_one_line_doc() -> None:
    for table in (*SECTIONS, *_rows_tables()):
        for setting in table.settings:
            assert setting.doc and "\n" not in setting.doc, f"{table.path}.{setting.name}"


def test_rows_use_their_declared_defaults_in_order() -> None:
    config = parse_config(
        "[vm]\ndisks = [{}, { name = 'b' }]\n[[xfstests.sections]]\n[[xfstests.sections]]\n",
        name="nixvmd.toml",
        base=Path("/project"),
    )

    assert [(d.name, d.size, d.serial) for d in config.vm.disks] == [
        ("disk0", 1 << 30, "nixvmd-disk0"),
        ("b", 1 << 30, "nixvmd-b"),
    ]
    assert [s.name for s in config.xfstests.sections] == ["xfs", "s1"]


def test_a_bad_notify_event_is_refused_at_load_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config('[suite]\n\n[notify]\non = ["fail", "oops"]\n', name="nixvmd.toml", base=Path("/p"))

    (problem,) = raised.value.problems
    assert problem.startswith("nixvmd.toml:4: notify.on: unknown event 'oops' (known: ")
    assert all(event.value in problem for event in NotifyEvent)


def test_notify_events_are_read_as_their_enum() -> None:
    config = parse_config('[notify]\non = ["pass", "build-error"]\n', name="nixvmd.toml", base=Path("/p"))

    assert config.notify.on == (NotifyEvent.PASS, NotifyEvent.BUILD_ERROR)
    assert all(isinstance(event, NotifyEvent) for event in config.notify.on)
