"""Names plugins add to `image.backend` and `suite.kind`, beside the built-in enums.

The image and suite registries call `add_name` when a plugin module registers a backend or
a suite kind, so a config naming it loads; config itself imports no registry.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

from nixvmd.config.values import string

E = TypeVar("E", bound=enum.StrEnum)

_EXTRA: dict[str, set[str]] = {"image.backend": set(), "suite.kind": set()}


def add_name(key: str, name: str) -> None:
    """Let config key `key` ("image.backend" or "suite.kind") name `name` too."""
    _EXTRA[key].add(name)


def name_of(kind: type[E], key: str) -> Callable[[Any], E | str]:
    """The converter of `key`: a member of `kind`, or a name a plugin added."""

    def convert(value: Any) -> E | str:
        text = string(value)
        try:
            return kind(text)
        except ValueError:
            if text in _EXTRA[key]:
                return text
            choices = ", ".join(repr(name) for name in (*(m.value for m in kind), *sorted(_EXTRA[key])))
            raise ValueError(f"expected one of {choices}, got {text!r}") from None

    return convert
