"""Sizes and durations as the config spells them."""

from __future__ import annotations

import pytest

from nixvmd.config.units import format_size, parse_duration, parse_size, qemu_memory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2G", 2 << 30),
        ("512M", 512 << 20),
        ("64k", 64 << 10),
        ("1T", 1 << 40),
        ("1.5GiB", 3 << 29),
        ("100MB", 100 << 20),
        (" 2 G ", 2 << 30),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "G", "2X", "-1G", "2 G B", "1e3", "2G2M"])
def test_parse_size_rejects_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a size like '2G', got "):
        parse_size(text)


def test_parse_size_names_the_bad_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_size("lots")
    assert str(info.value) == "expected a size like '2G', got 'lots'"


def test_parse_size_rejects_a_negative_number() -> None:
    with pytest.raises(ValueError, match="-5"):
        parse_size(-5)


def test_parse_size_does_not_take_a_boolean_for_a_number() -> None:
    with pytest.raises(ValueError):
        parse_size(True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", 1800.0),
        ("120s", 120.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("10S", 10.0),
        (90, 90.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration_accepts(text: str | int | float, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["soon", "", "30", "m", "30x", "10s garbage", "garbage 10s", "-5s"])
def test_parse_duration_rejects_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration like '30m'"):
        parse_duration(text)


def test_parse_duration_rejects_a_negative_number() -> None:
    with pytest.raises(ValueError):
        parse_duration(-1)


def test_parse_duration_does_not_take_a_boolean_for_a_number() -> None:
    with pytest.raises(ValueError):
        parse_duration(False)


@pytest.mark.parametrize(("size", "expected"), [(2 << 30, "2048M"), (512 << 20, "512M"), (1 << 20, "16M")])
def test_qemu_memory_is_whole_mebibytes_with_a_floor(size: int, expected: str) -> None:
    assert qemu_memory(size) == expected


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (12 << 10, "12 KiB"),
        (8_493_466, "8.1 MiB"),
        (14_186_432, "14 MiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5.0 TiB"),
        (-5, "0 B"),
    ],
)
def test_format_size_reads_like_a_person_writes(size: int, text: str) -> None:
    assert format_size(size) == text
