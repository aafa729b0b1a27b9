"""A bisect's record: its bounds, tests, every step (commit, build, run, verdict) and its end.

Kept in `<state_dir>/bisect/<id>/bisect.json` (with each step's build log beside it), written
after every step, so `nixvmctl bisect --status` and the history of bisects read it as it goes.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixvmd.results.space import make_dirs, write_atomic


class BisectState(enum.StrEnum):
    """Where a bisect is: going, or how it ended."""

    RUNNING = "running"
    FOUND = "found"  # git named the first bad commit
    UNDECIDED = "undecided"  # only skipped commits are left between good and bad
    ERROR = "error"  # nixvmd (or git) could not go on: no verdict
    STOPPED = "stopped"  # nixvmctl bisect --stop, or the daemon stopped


class Verdict(enum.StrEnum):
    """What one step says of its commit; `error` is nixvmd's failure and ends the bisect."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    ERROR = "error"


@dataclass
class Step:
    """One commit tried: its build (ok, failed), the run that tested it, the verdict and why."""

    commit: str
    subject: str = ""
    build: str = ""  # "" while building, then "ok" or "failed"
    build_log: str = ""
    run_id: str | None = None
    verdict: Verdict | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "subject": self.subject,
            "build": self.build,
            "build_log": self.build_log,
            "run_id": self.run_id,
            "verdict": self.verdict.value if self.verdict else None,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        verdict = data.get("verdict")
        return cls(
            commit=str(data["commit"]),
            subject=str(data.get("subject", "")),
            build=str(data.get("build", "")),
            build_log=str(data.get("build_log", "")),
            run_id=data.get("run_id"),
            verdict=Verdict(verdict) if verdict else None,
            note=str(data.get("note", "")),
        )


@dataclass
class Bisect:
    """One bisect: `good` and `bad` are full commit ids, `tests` what decides a step."""

    id: str
    good: str
    bad: str
    tests: tuple[str, ...]
    started_at: float
    state: BisectState = BisectState.RUNNING
    steps: list[Step] = field(default_factory=list)
    steps_left: int | None = None
    first_bad: str | None = None
    candidates: tuple[str, ...] = ()  # undecided: the commits the first bad one is among
    reason: str = ""
    finished_at: float | None = None
    started_by: str = "nixvmctl bisect"

    @property
    def current(self) -> Step | None:
        """The step going on, if any."""
        return self.steps[-1] if self.state is BisectState.RUNNING and self.steps else None

    def end(self, state: BisectState, reason: str) -> None:
        self.state, self.reason, self.finished_at = state, reason, time.time()
        self.steps_left = 0 if state is BisectState.FOUND else self.steps_left

    def status(self) -> dict[str, Any]:
        """Status's `bisect` object (DESIGN §2a)."""
        current = self.current
        return {
            "id": self.id,
            "state": self.state.value,
            "good": self.good,
            "bad": self.bad,
            "tests": list(self.tests),
            "step": len(self.steps),
            "steps_left": self.steps_left,
            "current": None
            if current is None
            else {
                "commit": current.commit,
                "subject": current.subject,
                "phase": "building" if not current.build else "testing",
                "run_id": current.run_id,
            },
            "first_bad": self.first_bad,
            "candidates": list(self.candidates),
            "reason": self.reason,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.status(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "started_by": self.started_by,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bisect:
        return cls(
            id=str(data["id"]),
            good=str(data["good"]),
            bad=str(data["bad"]),
            tests=tuple(str(t) for t in data.get("tests", ())),
            started_at=float(data["started_at"]),
            state=BisectState(data["state"]),
            steps=[Step.from_json(s) for s in data.get("steps", ())],
            steps_left=data.get("steps_left"),
            first_bad=data.get("first_bad"),
            candidates=tuple(data.get("candidates", ())),
            reason=str(data.get("reason", "")),
            finished_at=data.get("finished_at"),
            started_by=str(data.get("started_by", "nixvmctl bisect")),
        )


class BisectStore:
    """The bisects under `<state_dir>/bisect/`: one directory per bisect, and nixvmd's worktree."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "bisect"

    @property
    def worktree(self) -> Path:
        """nixvmd's own worktree of the kernel tree, kept between bisects (incremental builds)."""
        return self.root / "tree"

    def new(self, good: str, bad: str, tests: tuple[str, ...], started_by: str) -> Bisect:
        """A new bisect with its directory made; its id sorts by time."""
        make_dirs(self.root, "creating the bisect directory")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        n = 1
        while (self.root / f"{stamp}-{n:03d}").exists():
            n += 1
        bisect = Bisect(f"{stamp}-{n:03d}", good, bad, tests, time.time(), started_by=started_by)
        make_dirs(self.root / bisect.id, "creating the bisect directory")
        self.save(bisect)
        return bisect

    def build_log(self, bisect: Bisect, step: int) -> Path:
        return self.root / bisect.id / f"step-{step}-build.log"

    def save(self, bisect: Bisect) -> None:
        write_atomic(
            self.root / bisect.id / "bisect.json",
            json.dumps(bisect.to_json(), indent=2) + "\n",
            "writing the bisect record",
        )

    def latest(self) -> Bisect | None:
        """The newest bisect, if any."""
        if not self.root.is_dir():
            return None
        for path in sorted(self.root.glob("*/bisect.json"), reverse=True):
            try:
                return Bisect.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError):
                continue
        return None
