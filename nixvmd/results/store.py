"""The run store: <state_dir>/runs/<run_id>/ with console.log, run.json and junit.xml.

A run's record is on disk from its start (outcome `running`), and the run holds an flock on
`<run>/.live` until its record is final. A record still `running` whose lock nobody holds
belongs to a daemon that died (SIGKILL, OOM, a host crash): `recover` turns it into `error`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from nixvmd.errors import StateSpaceError
from nixvmd.results.record import Outcome, RunRecord, TestStatus
from nixvmd.results.space import make_dirs, room_for, write_atomic

log = logging.getLogger(__name__)

LIVE_LOCK = ".live"
INTERRUPTED = "nixvmd stopped during this run (killed?)"
# A run's scratch: what it owns only while it goes (disk images, initrd, the nix runner's
# work dir). "initrd.cpio" at the top of a run dir is where runs before `scratch/` kept it.
SCRATCH = "scratch"
RUN_SCRATCH = (SCRATCH, "initrd.cpio")


def scratch_dir(run_dir: Path) -> Path:
    """Where a run keeps what goes when it ends (nixvmd.run.workspace owns it)."""
    return run_dir / SCRATCH


def disks_dir(run_dir: Path) -> Path:
    """The run's guest disk images: fresh for each run, read (results disk) after QEMU is gone."""
    return scratch_dir(run_dir) / "disks"


# JUnit's <error>: the test could not complete (error), or the guest crashed or hung in it.
_AS_ERROR = (TestStatus.ERROR, TestStatus.CRASHED, TestStatus.TIMEOUT)

# XML 1.0 cannot carry these at all, not even escaped; console text (ANSI colours, NULs) has them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class RunStore:
    """Allocates run directories and reads and writes their records."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "runs"
        self._live: dict[str, int] = {}  # run id -> fd holding its .live lock

    def new_run_dir(self, now: float | None = None) -> tuple[str, Path]:
        """A fresh run id (sortable by time: UTC, so it never goes back with the clocks) and its directory.

        StateSpaceError when the file system has no room for another directory.
        """
        make_dirs(self.root, "creating the run store")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
        for n in range(1, 10000):
            run_id = f"{stamp}-{n:03d}"
            path = self.root / run_id
            try:
                with room_for(path, "creating the run directory"):
                    path.mkdir()
            except FileExistsError:
                continue
            return run_id, path
        raise RuntimeError("cannot allocate a run directory")

    def path(self, run_id: str) -> Path:
        if "/" in run_id or run_id in ("", ".", ".."):
            raise KeyError(run_id)
        return self.root / run_id

    def begin(self, record: RunRecord) -> None:
        """Mark `record`'s run as going: outcome `running` on disk, its lock held until `save`
        writes a final outcome. Whoever finds it `running` with the lock free knows we died."""
        run_dir = self.path(record.id)
        if record.id not in self._live:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            with room_for(run_dir / LIVE_LOCK, "creating the run's lock file"):
                fd = os.open(run_dir / LIVE_LOCK, flags, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._live[record.id] = fd
        record.outcome = Outcome.RUNNING
        self.save(record)

    def save(self, record: RunRecord) -> None:
        """Write run.json and junit.xml atomically; a final outcome ends the run's lock.

        StateSpaceError when there is no room for them (a final record then keeps its lock
        file, so the next start records the run as error rather than leave it `running`).
        """
        run_dir = self.path(record.id)
        text = json.dumps(record.to_json(), indent=2) + "\n"
        write_atomic(run_dir / "run.json", text, "writing the run record")
        write_atomic(run_dir / "junit.xml", junit_xml(record), "writing the run's JUnit report")
        if record.outcome is not Outcome.RUNNING:
            self._end(record.id)

    def _end(self, run_id: str) -> None:
        fd = self._live.pop(run_id, None)
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.path(run_id) / LIVE_LOCK).unlink()
            os.close(fd)

    def recover(self) -> list[str]:
        """Records left `running` by a daemon that died become `error`; their scratch goes.

        Only runs with a `.live` lock file are looked at (a finished run has none), and only
        those whose lock nobody holds: a run of another live daemon is left alone.
        Returns the ids of the runs recovered.
        """
        if not self.root.is_dir():
            return []
        recovered = []
        for run_dir in sorted(self.root.glob(f"*/{LIVE_LOCK}")):
            run_dir = run_dir.parent
            if run_dir.name in self._live or not _lock_is_free(run_dir / LIVE_LOCK):
                continue
            _remove_scratch(run_dir)
            try:
                record = self.load(run_dir.name)
            except KeyError:
                (run_dir / LIVE_LOCK).unlink(missing_ok=True)
                continue
            if record.outcome is Outcome.RUNNING:
                record.outcome = Outcome.ERROR
                record.reason = INTERRUPTED
                record.finished_at = _last_written(run_dir)
                record.clear_comparison()
                try:
                    self.save(record)
                except StateSpaceError as exc:
                    log.error("run %s: %s; it is recorded as error once there is room", record.id, exc)
                    continue  # its lock file stays: the next start tries again
                recovered.append(record.id)
                log.warning("run %s: %s; recorded as error", record.id, INTERRUPTED)
            (run_dir / LIVE_LOCK).unlink(missing_ok=True)
        for name in RUN_SCRATCH:
            for scratch in self.root.glob(f"*/{name}"):
                if not (scratch.parent / LIVE_LOCK).exists():
                    _remove_scratch(scratch.parent)
        return recovered

    def load(self, run_id: str) -> RunRecord:
        """The record of `run_id`; KeyError when there is none."""
        try:
            data = json.loads((self.path(run_id) / "run.json").read_text())
        except (OSError, ValueError):
            raise KeyError(run_id) from None
        return RunRecord.from_json(data)

    def ids(self) -> list[str]:
        """Run ids with a record, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").is_file())

    def latest(
        self, suite: str | None = None, *, before: str | None = None, finished_only: bool = False
    ) -> RunRecord | None:
        """The newest run with an outcome (of `suite`, older than run `before`), if any.

        With `finished_only`, runs that were cancelled or broke (error) are passed over:
        their tests say nothing to compare with.
        """
        return next(self.newest_first(suite, before=before, finished_only=finished_only), None)

    def newest_first(
        self, suite: str | None = None, *, before: str | None = None, finished_only: bool = False
    ) -> Iterator[RunRecord]:
        """The runs `latest` would choose from, newest first, each record read as it is reached."""
        for run_id in reversed(self.ids()):
            if before is not None and run_id >= before:
                continue
            try:
                record = self.load(run_id)
            except KeyError:
                continue
            if record.outcome in (None, Outcome.RUNNING) or (suite is not None and record.suite != suite):
                continue
            if finished_only and not record.is_verdict():
                continue
            yield record


def junit_xml(record: RunRecord) -> str:
    """The run as JUnit XML (one testsuite; regressions and fixes as properties).

    Each testcase's classname is ``<suite>.<collection>`` — ``kunit.<KUnit suite>``,
    ``xfstests.<section>`` (as fstests' own result.xml writes it) — or the suite alone for a
    test without a collection (``command``), and its name is the test's name inside that
    collection (``example_simple_test``, ``generic/001``): Jenkins shows classname as package
    and class, GitLab as the Suite column, so a run's cases group by KUnit suite or fstests
    section. `time` is left out when nothing measured the test (KTAP without printk times):
    Jenkins's and GitLab's readers take a missing time as unknown, a made-up 0.000 would read
    as a measurement. A failure's ``message`` is the test's headline, its text the message.
    """
    suite = ET.Element(
        "testsuite",
        name=f"nixvmd.{record.suite}",
        tests=str(len(record.tests)),
        failures=str(record.count(TestStatus.FAIL)),
        errors=str(sum(record.count(s) for s in _AS_ERROR)),
        skipped=str(record.count(TestStatus.SKIP)),
        time=f"{record.duration_s:.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.started_at)),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", record.id),
        ("outcome", record.outcome.value if record.outcome else ""),
        ("kernel_version", record.kernel_version),
        ("backend", record.backend),
        ("regressions", " ".join(record.regressions)),
        ("fixes", " ".join(record.fixes)),
        ("reason", record.reason),
    ):
        ET.SubElement(props, "property", name=name, value=_xml_text(value))
    for test in record.tests:
        classname = f"{record.suite}.{test.collection}" if test.collection else record.suite
        case = ET.SubElement(suite, "testcase", classname=_xml_text(classname))
        case.set("name", _xml_text(test.short_name))
        if test.duration_s is not None:
            case.set("time", f"{test.duration_s:.3f}")
        if test.shard is not None:
            shard = ET.SubElement(ET.SubElement(case, "properties"), "property", name="shard")
            shard.set("value", str(test.shard))
        if test.status is TestStatus.FAIL:
            failure = ET.SubElement(
                case,
                "failure",
                message=_xml_text(test.headline),
                type="regression" if test.name in record.regressions else "TestFail",
            )
            failure.text = _xml_text(test.message)
        elif test.status in _AS_ERROR:
            error = ET.SubElement(case, "error", message=_xml_text(test.headline), type=test.status.value)
            error.text = _xml_text(test.message)
        elif test.status is TestStatus.SKIP:
            ET.SubElement(case, "skipped", message=_xml_text(test.message))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _xml_text(text: str) -> str:
    """`text` with the characters XML cannot hold shown as \\xNN escapes."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _lock_is_free(path: Path) -> bool:
    """True when no process holds an flock on `path` (then we hold none either)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        return exc.errno == errno.ENOENT
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _last_written(run_dir: Path) -> float:
    """When the run last left a trace: the newest mtime of its files."""
    times = [p.stat().st_mtime for p in run_dir.iterdir() if p.is_file()]
    return max(times, default=time.time())


def _remove_scratch(run_dir: Path) -> None:
    """What a run left behind that only mattered while it went."""
    shutil.rmtree(scratch_dir(run_dir), ignore_errors=True)
    for name in RUN_SCRATCH[1:]:
        (run_dir / name).unlink(missing_ok=True)
