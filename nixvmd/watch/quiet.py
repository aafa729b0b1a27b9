"""A burst of changes settles when it has been quiet for a while, or has gone on too long.

A `make` in a tree writes hundreds of files over seconds, a `git checkout` thousands at
once; deciding after each, or after a fixed short delay, would start a run per file. A
quiet period (reset by each change) makes the burst one decision, and a longest wait
makes a stream that never stops decide all the same. Pure: the caller gives the time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QuietPeriod:
    """When a burst of changes is over: `quiet` seconds after its last change, or `most`
    seconds after its first, whichever comes first."""

    quiet: float
    most: float
    _first: float | None = None
    _last: float = 0.0

    @property
    def pending(self) -> bool:
        """A burst has begun and is not over yet."""
        return self._first is not None

    def note(self, now: float) -> float:
        """A change at `now`; returns when the burst is due to be over (`deadline`)."""
        if self._first is None:
            self._first = now
        self._last = max(self._last, now)
        return self.deadline()

    def deadline(self) -> float:
        """When the burst is over if nothing else changes (needs a burst: `pending`)."""
        assert self._first is not None, "no burst to settle"
        return min(self._last + self.quiet, self._first + self.most)

    def due(self, now: float) -> bool:
        """Whether the burst is over at `now`; when it is, the next change begins a new one."""
        if self._first is None or now < self.deadline():
            return False
        self._first = None
        return True
