"""A control request's arguments, checked: a wrong one is a ControlError naming what was expected.

A request that is the user's mistake gets one sentence back; only a bug in a handler
reaches the control server as something other than a NixvmdError (see control.py).
"""

from __future__ import annotations

from typing import Any

from nixvmd.errors import ControlError
from nixvmd.vm.gdbstub import GdbMode, parse_mode


def text(request: dict[str, Any], name: str) -> str | None:
    """The string argument `name` (None when absent, null or empty)."""
    value = request.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ControlError(f"{request['cmd']}: {name} must be a string, not {value!r}")
    return value


def flag(request: dict[str, Any], name: str) -> bool:
    """The yes/no argument `name` (False when absent or null)."""
    value = request.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ControlError(f"{request['cmd']}: {name} must be true or false, not {value!r}")
    return value


def count(request: dict[str, Any], name: str, default: int) -> int:
    """The whole-number argument `name` (`default` when absent); a number in a string is taken too."""
    value = request.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ControlError(f"{request['cmd']}: {name} must be a whole number, not {value!r}")
    return value


def names(request: dict[str, Any], name: str) -> list[str]:
    """The list-of-test-names argument `name` (empty when absent or null)."""
    value = request.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ControlError(f"{request['cmd']}: {name} must be a list of test names")
    return value


def gdb_mode(request: dict[str, Any], name: str) -> GdbMode | None:
    """The `--gdb` argument `name`: "wait", "nowait", or None (absent: no gdbstub)."""
    try:
        return parse_mode(text(request, name))
    except ValueError as exc:
        raise ControlError(f"{request['cmd']}: {exc}") from None
