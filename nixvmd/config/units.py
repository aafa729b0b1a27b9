"""The human units the config uses: sizes ("2G") and durations ("30m"), read and shown."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str | int) -> int:
    """Bytes in a size like "2G", "512M", "1.5GiB" or a plain number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"expected a size like '2G', got {text}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"expected a size like '2G', got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _SIZE_FACTORS[unit.upper()])


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration like "30m", "1h30m", "120s", "250ms" or a plain number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"expected a duration like '30m', got {text}")
        return float(text)
    raw = str(text).strip()
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(raw):
        if raw[pos : match.start()].strip():
            break
        total += float(match.group(1)) * _DURATION_FACTORS[match.group(2).lower()]
        pos = match.end()
    if pos == 0 or raw[pos:].strip():
        raise ValueError(f"expected a duration like '30m' or '120s', got {text!r}")
    return total


def qemu_memory(size: int) -> str:
    """QEMU's -m argument for a size in bytes (whole MiB)."""
    return f"{max(size >> 20, 16)}M"


def format_size(size: int) -> str:
    """A size in bytes the way a person reads it: "0 B", "12 KiB", "8.1 MiB", "3.0 GiB"."""
    value = float(max(size, 0))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
