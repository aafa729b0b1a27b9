"""The run record and its tests: plain data that run.json round-trips.

A test's `message` has a contract: its first line is the test's **headline**, the one line
that says why it failed (KUnit: the failed expectation or assertion, condensed from the
kernel's ``EXPECTATION FAILED at file:line`` and ``Expected ...`` lines; fstests: the first
hunk of the output mismatch, else ``failed, exit status N`` or the ``_check_*`` line;
kselftest and other TAP: the directive's reason or the last diagnostic; command: the exit
status and the last line of output). The lines after it are the details, as the suite
printed them. Every view uses the same rule through `TestResult.headline`: `nixvmctl watch`,
`status` and `results`, the junit ``message`` attribute, the desktop notification (through
the `failures` of `RunRecord.summary`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

MAX_HEADLINE = 200
"""A headline longer than this is cut (with "…"): it must fit a notification or a status line."""
SUMMARY_FAILURES = 5
"""How many failed tests (with their headlines) a run summary names."""


class Outcome(enum.StrEnum):
    """How a run ended. `failed` is the kernel's fault; `error` is the machinery's."""

    PASSED = "passed"
    FAILED = "failed"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"
    RUNNING = "running"  # on disk while the run goes; found at startup: the daemon died

    @property
    def is_verdict(self) -> bool:
        """True for outcomes that say something about the kernel (not error/cancelled/running)."""
        return self in (Outcome.PASSED, Outcome.FAILED, Outcome.CRASHED, Outcome.TIMEOUT)


class TestStatus(enum.StrEnum):
    """One test's verdict, as in run.json's `tests` list."""

    __test__ = False  # not a pytest test class

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"
    CRASHED = "crashed"  # the guest crashed, or halted, while this test ran (crash resume)
    TIMEOUT = "timeout"  # this test ran past its hang limit (crash resume)

    @property
    def failing(self) -> bool:
        """True for the verdicts that count as a failure (fail, error, crashed, timeout)."""
        return self in FAILING


FAILING = frozenset({TestStatus.FAIL, TestStatus.ERROR, TestStatus.CRASHED, TestStatus.TIMEOUT})
"""A test's verdicts that count as a failure: the kernel did not do what the test expects."""


@dataclass(frozen=True)
class TestResult:
    """One test of a run: `name` is the suite's own name (generic/001, kunit suite.case).

    `message`'s first line is the headline (see the module's docstring). `collection` is
    what the test belongs to inside its suite, for reports that group tests (junit's
    classname): the KUnit suite (the first part of ``suite.case``), the fstests section;
    "" when the suite has no such level. `duration_s` is None when nothing measured it.
    """

    __test__ = False

    name: str
    status: TestStatus
    duration_s: float | None = None
    message: str = ""
    artefacts: tuple[str, ...] = ()
    collection: str = ""
    shard: int | None = None  # which shard ran it, in a run that had shards

    @property
    def headline(self) -> str:
        """The first line of the message, cut to MAX_HEADLINE characters; "" when there is none."""
        return cut(self.message.strip().partition("\n")[0].strip(), MAX_HEADLINE)

    @property
    def short_name(self) -> str:
        """The name inside its collection (``case`` of ``suite.case``, the test of ``section:test``)."""
        for separator in (".", ":"):
            prefix = self.collection + separator
            if self.collection and self.name.startswith(prefix) and len(self.name) > len(prefix):
                return self.name[len(prefix) :]
        return self.name

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "status": self.status.value,
            "duration_s": self.duration_s,
            "message": self.message,
            "artefacts": list(self.artefacts),
        }
        if self.collection:
            data["collection"] = self.collection
        if self.shard is not None:
            data["shard"] = self.shard
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            name=str(data["name"]),
            status=TestStatus(data["status"]),
            duration_s=None if data.get("duration_s") is None else float(data["duration_s"]),
            message=str(data.get("message", "")),
            artefacts=tuple(str(a) for a in data.get("artefacts", ())),
            collection=str(data.get("collection", "")),
            shard=None if data.get("shard") is None else int(data["shard"]),
        )


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and "…" when it is longer."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Splat:
    """A kernel warning or crash report seen on the console, and the test running then."""

    kind: str
    line: str
    test: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "test": self.test}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Splat:
        return cls(kind=str(data["kind"]), line=str(data["line"]), test=data.get("test"))


@dataclass(frozen=True)
class SuspectName:
    """A test name the console gave one character off a known one (see nixvmd.results.suspect).

    `seen` is what the console said, `kept` the name the test is recorded under, `note`
    what differs and where the known name came from.
    """

    seen: str
    kept: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"seen": self.seen, "kept": self.kept, "note": self.note}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuspectName:
        return cls(seen=str(data["seen"]), kept=str(data["kept"]), note=str(data.get("note", "")))


@dataclass(frozen=True)
class Vmcore:
    """A crashed guest's memory dump (nixvmd.run.vmcore): where it is, its size, its format.

    `format` is QEMU's name for it: "elf", or "kdump-zlib" and the like (makedumpfile's
    flattened format before QEMU 8.2; "kdump-raw-zlib" and the like after).
    """

    path: str
    size: int
    format: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "format": self.format}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vmcore:
        return cls(path=str(data["path"]), size=int(data["size"]), format=str(data.get("format", "")))


def vmcore_of(data: Any) -> Vmcore | None:
    """The Vmcore a record's JSON holds under `vmcore`, if any."""
    return Vmcore.from_json(data) if isinstance(data, dict) else None


@dataclass(frozen=True)
class Attempt:
    """One VM of a run that resumed after a crash (nixvmd.run.resume): what it was given, how it ended.

    `directory` holds its console.log, qemu.log and results/, relative to the run's directory
    ("" for the run directory itself); `stopped_in` is the test the guest crashed or hung in.
    """

    tests: tuple[str, ...]
    outcome: Outcome
    reason: str = ""
    directory: str = ""
    stopped_in: str | None = None
    vmcore: Vmcore | None = None  # this VM's dump, when it crashed and one was taken

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tests": list(self.tests),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "dir": self.directory,
            "stopped_in": self.stopped_in,
        }
        if self.vmcore is not None:
            data["vmcore"] = self.vmcore.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        stopped = data.get("stopped_in")
        return cls(
            tests=tuple(str(t) for t in data.get("tests", ())),
            outcome=Outcome(data["outcome"]),
            reason=str(data.get("reason", "")),
            directory=str(data.get("dir", "")),
            stopped_in=None if stopped is None else str(stopped),
            vmcore=vmcore_of(data.get("vmcore")),
        )


@dataclass
class RunRecord:
    """Everything known about one run; serialised as run.json in its run directory."""

    id: str
    suite: str
    kernel_path: str
    kernel_version: str
    backend: str
    started_at: float
    outcome: Outcome | None = None
    reason: str = ""
    finished_at: float | None = None
    exit_status: int | None = None
    accel: str = ""
    tests: list[TestResult] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    known_failures: list[str] = field(default_factory=list)
    new_skips: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)  # failed here, passed when run again
    reruns: list[str] = field(default_factory=list)  # ids of the runs that ran them again
    splats: list[Splat] = field(default_factory=list)
    suspect_lines: list[SuspectName] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    narrowed_to: list[str] = field(default_factory=list)  # nixvmctl run --tests: only these ran
    kernel_build: str = ""  # the build number from the image's version string: "#7"
    git: dict[str, Any] | None = None  # {"commit", "dirty"} when the kernel tree is a git work tree
    attempts: list[Attempt] = field(default_factory=list)  # the VMs of a resumed run; [] for one VM
    cached: bool = False  # [distribute] engine = "nix": the results are a build's from before
    built_at: float | None = None  # when cached: when that build's output came into the store
    ssh: dict[str, Any] | None = None  # vm.network = "user": {"host", "port", "user", "command"}
    cause: str = ""  # why the run started: "new kernel", "tests/generic/750.out changed → generic/750"
    bisect: str = ""  # a bisect's step: that bisect's id (its suite is "<suite>-bisect", never compared)
    vmcore: Vmcore | None = None  # the crashed guest's memory dump (the first, when several VMs crashed)
    vmcore_note: str = ""  # why a crash has no dump: skipped for room, failed, timed out

    @property
    def build(self) -> str:
        """The kernel build in a person's words: "6.1.192 #7 a1b2c3d-dirty"."""
        return build_label(self.kernel_version, self.kernel_build, self.git)

    @property
    def duration_s(self) -> float:
        if self.finished_at is None:
            return 0.0
        return round(self.finished_at - self.started_at, 3)

    def is_verdict(self) -> bool:
        """True when the run ended with a verdict on the kernel (see `Outcome.is_verdict`)."""
        return self.outcome is not None and self.outcome.is_verdict

    def clear_comparison(self) -> None:
        """Forget regressions, fixes and the rest: only verdicts of the kernel are compared."""
        self.regressions, self.fixes, self.known_failures = [], [], []
        self.new_skips, self.flaky = [], []

    def count(self, status: TestStatus) -> int:
        return sum(1 for t in self.tests if t.status is status)

    def failures(self, at_most: int = SUMMARY_FAILURES) -> list[dict[str, str]]:
        """The first failing tests as ``{"name", "headline"}``, regressions first (see FAILING)."""
        failing = [t for t in self.tests if t.status.failing]
        regressions = set(self.regressions)
        failing.sort(key=lambda t: t.name not in regressions)  # stable: test order otherwise
        return [{"name": t.name, "headline": t.headline} for t in failing[:at_most]]

    def summary(self) -> dict[str, Any]:
        """The `last_run` object of the status JSON.

        Besides DESIGN's keys, `failures` names the first few failed tests with their
        headlines (`failures()`), so a view or a notification needs no second request.
        """
        summary: dict[str, Any] = {
            "id": self.id,
            "outcome": self.outcome.value if self.outcome else None,
            "reason": self.reason,
            "suite": self.suite,
            "kernel_version": self.kernel_version,
            "build": self.build,
            "passed": self.count(TestStatus.PASS),
            "failed": sum(1 for t in self.tests if t.status.failing),
            "skipped": self.count(TestStatus.SKIP),
            "regressions": list(self.regressions),
            "fixes": list(self.fixes),
            "known_failures": list(self.known_failures),
            "flaky": list(self.flaky),
            "splats": len(self.splats),
            "duration_s": self.duration_s,
            "failures": self.failures(),
        }
        if self.vmcore is not None:
            summary["vmcore"] = self.vmcore.to_json()
        return summary

    def to_json(self) -> dict[str, Any]:
        data = self.summary()
        data.update(
            {
                "kernel_path": self.kernel_path,
                "backend": self.backend,
                "accel": self.accel,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "exit_status": self.exit_status,
                "kernel_build": self.kernel_build,
                "git": dict(self.git) if self.git is not None else None,
                "new_skips": list(self.new_skips),
                "flaky": list(self.flaky),
                "reruns": list(self.reruns),
                "splats": [s.to_json() for s in self.splats],
                "suspect_lines": [s.to_json() for s in self.suspect_lines],
                "phases": dict(self.phases),
                "command": list(self.command),
                "environment": dict(self.environment),
                "narrowed_to": list(self.narrowed_to),
                "cause": self.cause,
                "tests": [t.to_json() for t in self.tests],
            }
        )
        if self.attempts:
            data["attempts"] = [a.to_json() for a in self.attempts]
        if self.vmcore_note:
            data["vmcore_note"] = self.vmcore_note
        if self.cached:
            data["cached"] = True
            data["built_at"] = self.built_at
        if self.ssh is not None:
            data["ssh"] = dict(self.ssh)
        if self.bisect:
            data["bisect"] = self.bisect
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        record = cls(
            **{
                k: v
                for k, v in data.items()
                if k in names
                and k not in ("outcome", "tests", "splats", "suspect_lines", "attempts", "vmcore")
            }
        )
        record.vmcore = vmcore_of(data.get("vmcore"))
        record.outcome = Outcome(data["outcome"]) if data.get("outcome") else None
        record.tests = [TestResult.from_json(t) for t in data.get("tests", [])]
        record.splats = [Splat.from_json(s) for s in data.get("splats", [])]
        record.suspect_lines = [SuspectName.from_json(s) for s in data.get("suspect_lines", [])]
        record.attempts = [Attempt.from_json(a) for a in data.get("attempts", [])]
        return record


def build_label(release: str, build: str = "", git: dict[str, Any] | None = None) -> str:
    """Release, build number and the tree's short commit, as far as known: "6.1.192 #7 a1b2c3d"."""
    parts = [release, build]
    if git and git.get("commit"):
        parts.append(str(git["commit"])[:7] + ("-dirty" if git.get("dirty") else ""))
    return " ".join(p for p in parts if p)
