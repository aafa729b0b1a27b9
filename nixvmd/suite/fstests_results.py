"""fstests result files (result.xml, check.time, artefacts), merged with check output into tests.

The merge rules: result.xml, when it has the test, decides its status and
runtime (check writes it from the same verdicts, plus its own bookkeeping);
check's output keeps the richer message (the diff). A ``.notrun`` file gives
a skipped test its reason. A ``.dmesg`` file next to a passing test makes it a
failure when it holds a kernel splat; with KEEP_DMESG=yes fstests keeps a
.dmesg for passing tests too, so a clean one changes nothing.

Test naming (see `to_test_results`): ``section:generic/001`` when the results span
several sections, else ``generic/001``. result.xml calls the section of a run
without sections ``global``; it is read as no section.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import IO

from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.fstests_output import DIFF_LINES_KEPT, FstestsResult, Key
from nixvmd.suite.splats import scan_lines

MAX_READ = 256 * 1024
"""Artefact files (.notrun, .dmesg) are read up to this many bytes."""

_ARTEFACT = re.compile(
    r"(\d{3}[A-Za-z0-9-]*?)\.(out\.bad|full|dmesg|notrun|hints|core|mountfail)(?:\.gz|\.xz|\.zst)?$"
)
_RANK = {TestStatus.SKIP: 0, TestStatus.PASS: 1, TestStatus.FAIL: 2, TestStatus.ERROR: 3}
_FAILING = (TestStatus.FAIL, TestStatus.ERROR)


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


def _testcase(elem: ET.Element) -> FstestsResult:
    status, message = TestStatus.PASS, []
    for child in elem:
        tag = child.tag
        if tag == "skipped":
            status = TestStatus.SKIP
            message = [child.get("message", "").strip()]
        elif tag in ("failure", "error"):
            status = TestStatus.FAIL if tag == "failure" else TestStatus.ERROR
            message = [child.get("message", "").strip(), *_first_lines(child.text, DIFF_LINES_KEPT)]
    if status in _FAILING:
        for tag in ("system-err", "kernlog"):
            detail = elem.find(tag)
            if detail is not None and len(message) <= 1:
                message += _first_lines(detail.text, DIFF_LINES_KEPT)
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
            if event == "start":
                if elem.tag == "testsuite" and not attributes:
                    attributes = dict(elem.attrib)
                open_elems.append(elem)
                continue
            open_elems.pop()
            if elem.tag == "property" and "name" in elem.attrib:
                properties[elem.attrib["name"]] = elem.get("value", "")
            elif elem.tag == "testcase":
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

    def scan(directory: Path, section: str | None, depth: int) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir and depth < 2:
                scan(entry, section if depth == 0 else directory.name, depth + 1)
            elif not is_dir and depth > 0 and (match := _ARTEFACT.match(entry.name)):
                key = (section, f"{directory.name}/{match.group(1)}")
                found.setdefault(key, []).append(str(entry))

    scan(Path(result_base), None, 0)
    return {key: tuple(paths) for key, paths in found.items()}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_READ).decode(errors="replace")
    except OSError:
        return None


def _with_artefacts(result: FstestsResult, paths: tuple[str, ...]) -> FstestsResult:
    result = replace(result, artefacts=paths)
    for path in paths:
        if path.endswith(".notrun") and result.status is TestStatus.SKIP:
            reason = _read(path)
            if reason and reason.strip():
                result = replace(result, message=reason.strip())
        elif path.endswith(".dmesg") and result.status is TestStatus.PASS:
            text = _read(path)
            splats = scan_lines(text.splitlines()) if text is not None else []
            if text is None:
                why = f"kernel log saved but unreadable (see {path})"
            elif splats:
                why = f"kernel {splats[0].kind} in dmesg: {splats[0].line} (see {path})"
            else:
                continue
            result = replace(result, status=TestStatus.FAIL, message=why)
    return result


def _collapse(results: Iterable[FstestsResult]) -> dict[Key, FstestsResult]:
    """One result per test; a test run several times (-I, -L) keeps its worst verdict."""
    runs: dict[Key, list[FstestsResult]] = {}
    for result in results:
        runs.setdefault(result.key, []).append(result)
    collapsed: dict[Key, FstestsResult] = {}
    for key, attempts in runs.items():
        worst = max(attempts, key=lambda r: _RANK[r.status])
        if len(attempts) > 1 and any(r.status is not worst.status for r in attempts):
            failed = sum(1 for r in attempts if r.status in _FAILING)
            note = f"{failed} of {len(attempts)} runs failed"
            worst = replace(worst, message=f"{note}\n{worst.message}" if worst.message else note)
        collapsed[key] = worst
    return collapsed


def merge_results(
    check: Sequence[FstestsResult],
    xunit: Sequence[FstestsResult] = (),
    artefacts: Mapping[Key, tuple[str, ...]] | None = None,
) -> list[TestResult]:
    """One TestResult per test from check output, result.xml and artefacts (see the module doc)."""
    merged = _collapse(check)
    for key, report in _collapse(xunit).items():
        seen = merged.get(key)
        if seen is None:
            merged[key] = report
            continue
        keep_message = seen.status is report.status and seen.message
        merged[key] = replace(
            seen,
            status=report.status,
            duration_s=report.duration_s if report.duration_s is not None else seen.duration_s,
            message=seen.message if keep_message else report.message or seen.message,
        )
    if artefacts:
        for key, paths in artefacts.items():
            if key in merged:
                merged[key] = _with_artefacts(merged[key], paths)
    return to_test_results(merged.values())


def to_test_results(results: Iterable[FstestsResult]) -> list[TestResult]:
    """TestResults named ``section:test`` when `results` span several sections, else ``test``."""
    collapsed = _collapse(results)
    qualify = len({section for section, _ in collapsed}) > 1
    return [
        TestResult(
            name=f"{r.section}:{r.name}" if qualify and r.section else r.name,
            status=r.status,
            duration_s=r.duration_s,
            message=r.message,
            artefacts=r.artefacts,
        )
        for r in collapsed.values()
    ]
