"""NixLog: Nix's internal-json lines become builds, their log lines and Nix's errors (pure)."""

from __future__ import annotations

import json
from typing import Any

from nixvmd.distribute.nix_log import BuildLine, BuildStarted, NixLog, NixMessage, Plain, error_sentence

DRV_A = "/nix/store/" + "a" * 32 + "-nixvmd-shard-0.drv"
DRV_B = "/nix/store/" + "b" * 32 + "-nixvmd-shard-1.drv"
MACHINE = "ssh://builder"


def nix(**entry: Any) -> str:
    return "@nix " + json.dumps(entry)


def started(act: int, drv: str, machine: str = MACHINE) -> str:
    return nix(
        action="start",
        id=act,
        level=3,
        type=105,
        text=f"building '{drv}'",
        parent=0,
        fields=[drv, machine, 1, 1],
    )


def logged(act: int, text: str) -> str:
    return nix(action="result", id=act, type=101, fields=[text])


def test_each_log_line_goes_to_the_derivation_its_build_activity_builds() -> None:
    log = NixLog()

    events = [
        log.feed(line)
        for line in (
            started(7, DRV_A),
            started(8, DRV_B, ""),
            logged(8, "b's line"),
            logged(7, "\x1b[1ma's line\x1b[0m"),
            nix(action="stop", id=7),
            logged(7, "after its stop"),
        )
    ]

    assert events == [
        BuildStarted(DRV_A, MACHINE),
        BuildStarted(DRV_B, ""),
        BuildLine(DRV_B, "b's line"),
        BuildLine(DRV_A, "a's line"),
        None,
        None,
    ]


def test_other_activities_and_results_say_nothing_and_plain_lines_are_kept() -> None:
    log = NixLog()

    assert (
        log.feed(
            nix(action="start", id=3, level=5, type=100, text="copying", parent=0, fields=["/nix/store/x"])
        )
        is None
    )
    assert log.feed(nix(action="result", id=3, type=105, fields=[1, 2, 0, 0])) is None
    assert log.feed(logged(99, "of an activity never started")) is None
    assert log.feed("/nix/store/" + "c" * 32 + "-out") == Plain("/nix/store/" + "c" * 32 + "-out")
    assert log.feed("@nix {not json") == Plain("@nix {not json")


def test_messages_keep_their_level_without_colours() -> None:
    line = nix(action="msg", level=0, msg="\x1b[31;1merror:\x1b[0m build of '" + DRV_A + "' failed")

    assert NixLog().feed(line) == NixMessage(0, f"error: build of '{DRV_A}' failed")


def test_the_error_sentence_names_the_derivation_and_says_why() -> None:
    messages = [
        NixMessage(1, f"warning: something about {DRV_A}"),
        NixMessage(0, "error: unexpected end-of-file"),
        NixMessage(0, f"error: builder for '{DRV_B}' failed with exit code 1"),
        NixMessage(0, f"error: builder for '{DRV_A}' failed with exit code 1\n       more detail"),
    ]

    assert (
        error_sentence(messages, DRV_A)
        == f"builder for '{DRV_A}' failed with exit code 1 (unexpected end-of-file)"
    )
    assert error_sentence(messages[2:], DRV_A) == f"builder for '{DRV_A}' failed with exit code 1"
    assert error_sentence(messages[:2], DRV_A) == "unexpected end-of-file"
    assert error_sentence(messages[2:3], DRV_A) is None
    assert error_sentence(messages[:1], DRV_A) is None
