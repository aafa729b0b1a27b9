"""The daemon's phase, and what the watches saw since the last decision."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class Phase(enum.StrEnum):
    """What the daemon is doing: status's `state`, the `state` event, systemd's STATUS=."""

    IDLE = "idle"
    PAUSED = "paused"
    ERROR = "error"  # state_dir has no room; the next write that fits ends it
    BUILDING = "building"
    BOOTING = "booting"
    TESTING = "testing"
    REPORTING = "reporting"


@dataclass
class Touched:
    """Which watched things changed since the last decision (a burst of events is one)."""

    kernel: bool = False  # written: new bytes are news
    kernel_recheck: bool = False  # look again, but the same bytes are no news (a missed event)
    config: bool = False
    image: bool = False

    def take(self) -> Touched:
        """What was touched; from now on nothing is."""
        seen = dataclasses.replace(self)
        self.kernel = self.kernel_recheck = self.config = self.image = False
        return seen
