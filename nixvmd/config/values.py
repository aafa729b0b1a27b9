"""Converters from TOML values to config values; each raises ValueError or TypeError saying why."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from nixvmd.config.schema import DumpLimit, NotifyEvent
from nixvmd.config.units import parse_duration, parse_size

T = TypeVar("T")


def expanded_path(value: Any) -> Path:
    text = string(value)
    expanded = os.path.expanduser(os.path.expandvars(text))
    if "$" in expanded:
        raise ValueError(f"{text!r} names an unset environment variable")
    return Path(expanded)


def optional_path(value: Any) -> Path | None:
    return None if string(value) == "" else expanded_path(value)


def under(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else base / p


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_show(value)}")
    return value


def strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {_show(value)}")
    return tuple(value)


def paths(value: Any) -> tuple[Path, ...]:
    return tuple(Path(v) for v in strings(value))


def expanded_paths(value: Any) -> tuple[Path, ...]:
    return tuple(expanded_path(v) for v in strings(value))


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_show(value)}")
    return value


def positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"expected a whole number of at least 1, got {_show(value)}")
    return value


def count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a whole number of 0 or more, got {_show(value)}")
    return value


def shards(value: Any) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f'expected a whole number of at least 1 or "auto", got {_show(value)}')
    return value


def memory(value: Any) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TypeError(f"expected a size like '2G', got {_show(value)}")
    size = parse_size(value)
    if size < 32 << 20:
        raise ValueError(f"expected at least 32M of guest memory, got {value!r}")
    return size


def duration(value: Any) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise TypeError(f"expected a duration like '30m', got {_show(value)}")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {value!r}")
    return seconds


def guest_path(value: Any) -> Path:
    text = string(value)
    if not text.startswith("/"):
        raise ValueError(f"expected an absolute path in the guest, got {text!r}")
    return Path(text)


def guest_dir(value: Any) -> str:
    return str(guest_path(value))


def disk_size(value: Any) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TypeError(f"expected a size like '4G', got {_show(value)}")
    size = parse_size(value)
    if size < 16 << 20:
        raise ValueError(f"expected at least 16M, got {value!r}")
    return size


def multiple(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 1:
        raise TypeError(f"expected a number of at least 1, got {_show(value)}")
    return float(value)


def fstyp(value: Any) -> str:
    text = string(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.]{0,15}", text):
        raise ValueError(f"expected a file system type like 'xfs' or 'ext4', got {text!r}")
    return text


def config_value(value: Any) -> str:
    # local.config values are quoted by fstests' own parser, which cannot hold quotes or newlines.
    text = string(value)
    if any(c in text for c in "\"'\n\\`$"):
        raise ValueError(f"local.config values cannot hold quotes, newlines, backslashes, ` or $: {text!r}")
    return text


def config_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table like {{ KEY = 'value' }}, got {_show(value)}")
    pairs = []
    for key, item in value.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"expected an upper-case shell variable name, got {key!r}")
        pairs.append((key, config_value(item)))
    return tuple(pairs)


def identifier(value: Any) -> str:
    text = string(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", text):
        raise ValueError(f"expected a short name of letters, digits, '_', '.', '-', got {text!r}")
    return text


def serial(value: Any) -> str:
    text = string(value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,20}", text):
        raise ValueError(f"expected up to 20 letters, digits, '_', '.', '-' (a virtio serial), got {text!r}")
    return text


def usb_ids(value: Any) -> tuple[tuple[int, int], ...]:
    ids = []
    for text in strings(value):
        match = re.fullmatch(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})", text)
        if match is None:
            raise ValueError(f"expected USB ids as 'vendor:product' in hex (lsusb shows them), got {text!r}")
        ids.append((int(match.group(1), 16), int(match.group(2), 16)))
    return tuple(ids)


def notify_events(value: Any) -> tuple[NotifyEvent, ...]:
    events = []
    for name in strings(value):
        try:
            events.append(NotifyEvent(name))
        except ValueError:
            raise ValueError(f"unknown event {name!r} (known: {', '.join(NotifyEvent)})") from None
    return tuple(events)


def dump_limit(value: Any) -> DumpLimit:
    """keep_dumps: a count of dumps (5) or the size they may take together ("8G")."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return DumpLimit(count=value)
    expected = f"expected a count of dumps like 5 or a size like '8G', got {_show(value)}"
    if isinstance(value, str):
        try:
            return DumpLimit(count=None, size=parse_size(value))
        except ValueError:
            raise ValueError(expected) from None
    raise TypeError(expected)


def enum_of(kind: type[T]) -> Callable[[Any], T]:
    def convert(value: Any) -> T:
        text = string(value)
        try:
            return kind(text)  # type: ignore[call-arg]
        except ValueError:
            choices = ", ".join(repr(m.value) for m in kind)  # type: ignore[attr-defined]
            raise ValueError(f"expected one of {choices}, got {text!r}") from None

    return convert


def optional_enum_of(kind: type[T]) -> Callable[[Any], T | None]:
    """Like `enum_of`, with "" for None (the key not given)."""
    member = enum_of(kind)

    def convert(value: Any) -> T | None:
        return None if string(value) == "" else member(value)

    return convert


def _show(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})"
