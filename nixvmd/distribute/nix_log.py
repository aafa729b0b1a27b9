"""Nix's `--log-format internal-json` read a line at a time: which build says what, and Nix's errors.

Nix (2.8 and later) writes one JSON object per line after `@nix `: activities `start` and
`stop` (a build is type 105 with the fields derivation, machine, round, rounds), their
`result`s (101: one line of a build's log) and `msg`s (level 0: an error). `NixLog` keeps
which activity builds which derivation, so each log line is handed to its derivation; lines
without the prefix (nix-store's own stdout, a tool that ignores the format) are `Plain`.
Pure: the engine (engine.py) runs Nix and feeds the lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from nixvmd.image.nix import clean_line

PREFIX = "@nix "
ACT_BUILD = 105  # Nix's actBuild: fields [drv path, machine ("" = this one), round, rounds]
RES_BUILD_LOG_LINE = 101  # Nix's resBuildLogLine: fields [line]
LVL_ERROR = 0

_DRV = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s'\"`]+\.drv")


@dataclass(frozen=True)
class BuildStarted:
    """Nix started building `drv`, on `machine` (its store URI; "" when it builds locally)."""

    drv: str
    machine: str


@dataclass(frozen=True)
class BuildLine:
    """One line of `drv`'s build log (what its builder printed, wherever it runs)."""

    drv: str
    text: str


@dataclass(frozen=True)
class NixMessage:
    """A message of Nix's own at `level` (0 is an error), without colours."""

    level: int
    text: str

    @property
    def drvs(self) -> list[str]:
        """The derivations the message names, in order."""
        return _DRV.findall(self.text)


@dataclass(frozen=True)
class Plain:
    """A line that is not Nix's JSON log (nix-store prints the outputs it realised on stdout)."""

    text: str


LogEvent = BuildStarted | BuildLine | NixMessage | Plain


@dataclass
class NixLog:
    """One Nix process's log as it goes: its activities, and what each line means."""

    builds: dict[int, str] = field(default_factory=dict)  # activity id -> derivation it builds

    def feed(self, line: str) -> LogEvent | None:
        """What `line` says; None for what says nothing here (progress, copies, other activities)."""
        if not line.startswith(PREFIX):
            return Plain(clean_line(line))
        try:
            entry = json.loads(line[len(PREFIX) :])
        except json.JSONDecodeError:
            return Plain(clean_line(line))
        if not isinstance(entry, dict):
            return None
        action = entry.get("action")
        if action == "start":
            return self._start(entry)
        if action == "stop":
            self.builds.pop(_int(entry.get("id")), None)
            return None
        if action == "result" and entry.get("type") == RES_BUILD_LOG_LINE:
            drv = self.builds.get(_int(entry.get("id")))
            fields = entry.get("fields") or [""]
            return None if drv is None else BuildLine(drv, clean_line(str(fields[0])))
        if action == "msg":
            return NixMessage(_int(entry.get("level")), clean_line(str(entry.get("msg", ""))))
        return None

    def _start(self, entry: dict[str, Any]) -> BuildStarted | None:
        fields = entry.get("fields") or []
        if entry.get("type") != ACT_BUILD or not fields:
            return None
        drv = str(fields[0])
        self.builds[_int(entry.get("id"))] = drv
        return BuildStarted(drv, str(fields[1]) if len(fields) > 1 else "")


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def error_sentence(messages: Collection[NixMessage], drv: str) -> str | None:
    """Nix's error about `drv` as one sentence; None when Nix reported no error.

    The first error naming `drv` ("builder for '...' failed with exit code 1"), followed in
    parentheses by the first error naming no derivation, which says why when a builder went
    away ("unexpected end-of-file") or could not be reached; either alone when only it was
    said. Of a multi-line error only its first line is kept, without Nix's "error: ".
    """
    errors = [m for m in messages if m.level == LVL_ERROR and m.text.strip()]
    named = next((_first_line(m) for m in errors if drv in m.drvs), None)
    general = next((_first_line(m) for m in errors if not m.drvs), None)
    if named and general:
        return f"{named} ({general})"
    return named or general


def _first_line(message: NixMessage) -> str:
    first = next(line.strip() for line in message.text.splitlines() if line.strip())
    return first.removeprefix("error:").strip()
