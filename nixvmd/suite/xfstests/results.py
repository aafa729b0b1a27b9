"""fstests result files (result.xml, check.time, artefacts), merged with check output into tests.

The merge rules: result.xml, when it has the test, decides its status and
runtime (check writes it from the same verdicts, plus its own bookkeeping);
check's output keeps the richer message (the diff). A ``.notrun`` file gives
a skipped test its reason when neither check nor result.xml gave one. A
``.dmesg`` file (or .dmesg.gz, .dmesg.xz) next to a passing test makes it a
failure when it holds a kernel splat; with KEEP_DMESG=yes fstests keeps a
.dmesg for passing tests too, so a clean one changes nothing.

Test naming (see `to_test_results`): ``section:generic/001`` when the results span
several sections, else ``generic/001``. result.xml calls the section of a run
without sections ``global``; it is read as no section. Each test's `collection` is
its section (``global`` without one), as fstests' own result.xml classname has it.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import IO

from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.splats import scan_lines
from nixvmd.suite.xfstests.verdict import (
    DIFF_LINES_KEPT,
    FAILING,
    RANK,
    FstestsResult,
    Key,
    mismatch_headline,
)

log = logging.getLogger(__name__)

MAX_READ = 256 * 1024
"""Artefact files (.notrun, .dmesg) are read up to this many bytes."""

_ARTEFACT = re.compile(
    r"(\d{3}[A-Za-z0-9-]*?)\.(out\.bad|full|dmesg|notrun|hints|core|mountfail)(?:\.gz|\.xz|\.zst)?$"
)


@dataclass(frozen=True)
class XunitReport:
    """What result.xml said. `error` is empty when the whole file parsed."""

    tests: tuple[FstestsResult, ...]
    attributes: Mapping[str, str]
    properties: Mapping[str, str]
    error: str = ""


def _section(classname: str) -> str | None:
    prefix, _, section = classname.partition(".")
    if prefix != "xfstests" or not section or section == "global":
        return None
    return section


def _first_lines(text: str | None, count: int) -> list[str]:
    if not text:
        return []
    return [line for line in text.strip("\n").splitlines() if line.strip()][:count]


def _local(tag: str) -> str:
    """An element's name without its namespace: fstests since 2022 puts result.xml in its own."""
    return tag.rpartition("}")[2]


def _testcase(elem: ET.Element) -> FstestsResult:
    status, message = TestStatus.PASS, []
    for child in elem:
        tag = _local(child.tag)
        if tag == "skipped":
            status = TestStatus.SKIP
            message = [child.get("message", "").strip()]
        elif tag in ("failure", "error"):
            status = TestStatus.FAIL if tag == "failure" else TestStatus.ERROR
            message = [child.get("message", "").strip(), *_first_lines(child.text, DIFF_LINES_KEPT)]
    if status in FAILING:
        details = {_local(child.tag): child for child in elem}
        for tag in ("system-err", "kernlog"):
            detail = details.get(tag)
            if detail is not None and len(message) <= 1:
                message += _first_lines(detail.text, DIFF_LINES_KEPT)
        if (headline := mismatch_headline(message[1:])) is not None:
            message.insert(0, headline)
    try:
        duration: float | None = float(elem.get("time", ""))
    except ValueError:
        duration = None
    return FstestsResult(
        name=elem.get("name", ""),
        section=_section(elem.get("classname", "")),
        status=status,
        duration_s=duration,
        message="\n".join(line for line in message if line),
    )


def parse_result_xml(source: str | PathLike[str] | IO[bytes]) -> XunitReport:
    """Read result.xml (`check -R xunit`) incrementally; a bad or cut file gives what it could."""
    tests: list[FstestsResult] = []
    attributes: dict[str, str] = {}
    properties: dict[str, str] = {}
    error = ""
    path: str | IO[bytes] = source if not isinstance(source, PathLike) else str(source)
    open_elems: list[ET.Element] = []
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            tag = _local(elem.tag)
            if event == "start":
                if tag == "testsuite" and not attributes:
                    attributes = dict(elem.attrib)
                open_elems.append(elem)
                continue
            open_elems.pop()
            if tag == "property" and "name" in elem.attrib:
                properties[elem.attrib["name"]] = elem.get("value", "")
            elif tag == "testcase":
                tests.append(_testcase(elem))
                # Drop what was read so memory stays flat however long the file.
                elem.clear()
                if open_elems:
                    open_elems[-1].remove(elem)
    except ET.ParseError as exc:
        error = f"result.xml is malformed or truncated: {exc}"
    except (OSError, ValueError, LookupError) as exc:
        error = f"result.xml could not be read: {exc}"
    return XunitReport(tuple(tests), attributes, properties, error)


def parse_check_time(text: str) -> dict[str, float]:
    """check.time (``generic/001 3`` lines) as {test: seconds}, for ETA; bad lines are skipped."""
    times: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and "/" in parts[0]:
            try:
                times[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return times


def read_check_time(path: str | PathLike[str]) -> dict[str, float]:
    """check.time at `path` as {test: seconds}; {} when it is missing or unreadable."""
    try:
        return parse_check_time(Path(path).read_text(errors="replace"))
    except OSError:
        return {}


def find_artefacts(result_base: str | PathLike[str]) -> dict[Key, tuple[str, ...]]:
    """Per-test artefacts under RESULT_BASE: ``<group>/<NNN>.<ext>`` or ``<section>/<group>/...``.

    Keys are (section or None, "group/NNN"); values are paths, sorted.
    """
    found: dict[Key, list[str]] = {}

    def scan(directory: str, section: str | None, depth: int) -> None:
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return
        group = os.path.basename(directory)
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir and depth < 2:
                scan(entry.path, section if depth == 0 else group, depth + 1)
            elif not is_dir and depth > 0 and (match := _ARTEFACT.match(entry.name)):
                found.setdefault((section, f"{group}/{match.group(1)}"), []).append(entry.path)

    scan(os.fspath(result_base), None, 0)
    return {key: tuple(paths) for key, paths in found.items()}


def read_result_base(base: Path) -> tuple[list[FstestsResult], dict[Key, tuple[str, ...]]]:
    """result.xml files and per-test artefacts under an extracted RESULT_BASE.

    nixvmd gives each section RESULT_BASE=<base>/<section>; should fstests add the
    section once more, a result.xml deeper down names its own directory's section.
    """
    xunit: list[FstestsResult] = []
    artefacts = find_artefacts(base)
    for xml in sorted(base.rglob("result.xml")):
        report = parse_result_xml(xml)
        if report.error:
            log.warning("%s: %s", xml, report.error)
        xunit += report.tests
        directory = xml.parent
        if directory != base and directory.parent != base:
            for (section, name), paths in find_artefacts(directory).items():
                if section is None:
                    artefacts.setdefault((directory.name, name), paths)
    return xunit, artefacts


def _read(path: str) -> str | None:
    """The start of an artefact file as text, uncompressing .gz and .xz; None if unreadable."""
    opener = gzip.open if path.endswith(".gz") else lzma.open if path.endswith(".xz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read(MAX_READ)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return None
    return data.decode(errors="replace") if isinstance(data, bytes) else None


def _judge_artefacts(status: TestStatus, message: str, paths: tuple[str, ...]) -> tuple[TestStatus, str]:
    """What a test's artefact files add: the reason it did not run, a splat in its kernel log."""
    for path in paths:
        kind = _ARTEFACT.search(os.path.basename(path))
        suffix = kind.group(2) if kind else ""
        if suffix == "notrun" and status is TestStatus.SKIP and not message:
            reason = _read(path)
            if reason and reason.strip():
                message = reason.strip()
        elif suffix == "dmesg" and status is TestStatus.PASS:
            text = _read(path)
            splats = scan_lines(text.splitlines()) if text is not None else []
            if text is None:
                status, message = TestStatus.FAIL, f"kernel log saved but unreadable (see {path})"
            elif splats:
                what = f"kernel {splats[0].kind} in dmesg: {splats[0].line} (see {path})"
                status, message = TestStatus.FAIL, what
    return status, message


def _collapse(results: Iterable[FstestsResult]) -> dict[Key, FstestsResult]:
    """One result per test; a test run several times (-I, -L) keeps its worst verdict."""
    collapsed: dict[Key, FstestsResult] = {}
    reruns: dict[Key, list[FstestsResult]] = {}
    for result in results:
        key = (result.section, result.name)
        seen = collapsed.get(key)
        if seen is None:
            collapsed[key] = result
        else:
            reruns.setdefault(key, [seen]).append(result)
            if RANK[result.status] >= RANK[seen.status]:
                collapsed[key] = result
    for key, attempts in reruns.items():
        worst = collapsed[key]
        if any(r.status is not worst.status for r in attempts):
            failed = sum(1 for r in attempts if r.status in FAILING)
            note = f"{failed} of {len(attempts)} runs failed"
            headline, newline, details = worst.message.partition("\n")
            message = f"{headline} ({note})" if headline else note
            collapsed[key] = replace(worst, message=message + newline + details)
    return collapsed


def _name(key: Key, qualify: bool) -> str:
    section, name = key
    return f"{section}:{name}" if qualify and section else name


def _collection(key: Key) -> str:
    return key[0] or "global"


def merge_results(
    check: Sequence[FstestsResult],
    xunit: Sequence[FstestsResult] = (),
    artefacts: Mapping[Key, tuple[str, ...]] | None = None,
) -> list[TestResult]:
    """One TestResult per test from check output, result.xml and artefacts (see the module doc)."""
    from_check, from_xunit = _collapse(check), _collapse(xunit)
    keys = list(from_check) + [key for key in from_xunit if key not in from_check]
    qualify = len({section for section, _ in keys}) > 1
    found = artefacts or {}
    merged = []
    for key in keys:
        seen, report = from_check.get(key), from_xunit.get(key)
        first = seen or report
        assert first is not None
        status, duration, message, paths = first.status, first.duration_s, first.message, first.artefacts
        if seen is not None and report is not None:
            status = report.status
            if report.duration_s is not None:
                duration = report.duration_s
            if not (seen.status is report.status and seen.message):
                message = report.message or seen.message
        if key in found:
            paths = found[key]
            status, message = _judge_artefacts(status, message, paths)
        merged.append(TestResult(_name(key, qualify), status, duration, message, paths, _collection(key)))
    return merged


def to_test_results(results: Iterable[FstestsResult]) -> list[TestResult]:
    """TestResults named ``section:test`` when `results` span several sections, else ``test``."""
    collapsed = _collapse(results)
    qualify = len({section for section, _ in collapsed}) > 1
    return [
        TestResult(_name(key, qualify), r.status, r.duration_s, r.message, r.artefacts, _collection(key))
        for key, r in collapsed.items()
    ]


def live_result(result: FstestsResult, several_sections: bool) -> TestResult:
    """One verdict as the console showed it, named as the run's record will name it."""
    key = (result.section, result.name)
    return TestResult(
        _name(key, several_sections), result.status, result.duration_s, result.message, (), _collection(key)
    )
