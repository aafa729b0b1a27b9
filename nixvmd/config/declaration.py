"""What a config key's declaration holds: a Setting in a Table, its default and change kind.

The declarations themselves are in settings.py; load.py reads a file by them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ChangeKind(enum.StrEnum):
    """What changing a key calls for when the config is reloaded."""

    IMAGE = "image"  # the guest image is made from it: rebuild (nix backend), then run
    RUNTIME = "runtime"  # the next boot or suite run uses it: run again with the image as it is
    REPORT = "report"  # only what is told after a run: the next report uses it, nothing runs
    RESTART = "restart"  # read when nixvmd starts: takes effect at the next start
    WATCH = "watch"  # what is watched: the watches are looked up again, nothing runs


class Base(enum.Enum):
    """What a relative path in a key is taken from."""

    CONFIG_DIR = "the config file's directory"
    KERNEL_TREE = "kernel.tree"


@dataclass(frozen=True)
class Row:
    """What a derived default may depend on: the row's place among [[rows]], the keys read before it."""

    index: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Derived:
    """A default computed while the file is read (from the row so far, or the environment).

    Unlike a plain default it is the value itself: neither converted nor taken relative to a base.
    """

    compute: Callable[[Row], Any]
    doc: str


@dataclass(frozen=True)
class Setting:
    """One key of a table: its name, how to read it, its default, a one-line doc.

    `convert` is a values.py converter, or the Table each of the key's [[rows]] is read with.
    `default` is the TOML value used when the key is absent, read like a user's value (or a
    Derived). `change` None means the kind of its table; `base` is what a relative path is
    taken from (None: paths stay as written).
    """

    name: str
    convert: Callable[[Any], Any] | Table
    default: Any
    doc: str
    change: ChangeKind | None = None
    base: Base | None = None


@dataclass(frozen=True)
class Table:
    """The keys of one TOML table and the dataclass they fill: a [section], or each [[rows]] table.

    Rows only: `example` shows one in messages, `noun` names one, no two rows may share a value
    of a `unique` key, and `required` refuses an empty list.
    """

    path: str
    build: Callable[..., Any]
    settings: tuple[Setting, ...]
    change: ChangeKind | None = None
    example: str = ""
    noun: str = ""
    unique: tuple[str, ...] = ()
    required: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The keys this table knows, in declaration order."""
        return tuple(s.name for s in self.settings)

    def change_of(self, setting: Setting) -> ChangeKind:
        """What a change of `setting` calls for (its own kind, else its table's)."""
        kind = setting.change or self.change
        assert kind is not None, f"{self.path}.{setting.name} declares no change kind"
        return kind
