"""nixvmd's KTAP counts against the kernel's own tool: tools/testing/kunit/kunit.py of the
kunit-tiny tree (Debian's linux-source-6.1, unpacked by scripts/build-kunit-kernel.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nixvmd.suite.ktap import parse_ktap
from tests.conftest import KERNEL_CACHE

DATA = Path(__file__).parent / "data"
KUNIT_PY = KERNEL_CACHE / "kunit-tiny" / "src" / "tools" / "testing" / "kunit" / "kunit.py"

# kunit.py's JSON statuses: ERROR is its CRASHED (a subtest the plan announced and the
# output never gave, among others); everything that is not PASS, SKIP or ERROR is FAIL.
STATUS = {"PASS": "pass", "FAIL": "fail", "SKIP": "skip", "ERROR": "error"}

Counts = dict[str, dict[str, int]]


def _count(into: dict[str, int], status: str) -> None:
    into[status] = into.get(status, 0) + 1


def _leaves(group: dict[str, Any], into: dict[str, int]) -> dict[str, int]:
    """A suite's leaf cases, parameterised cases included (kunit.py nests them as sub-groups)."""
    for case in group["test_cases"]:
        _count(into, STATUS[case["status"]])
    for sub_group in group["sub_groups"]:
        _leaves(sub_group, into)
    return into


def kunit_py_counts(log: Path, tmp_path: Path) -> Counts:
    """Per suite, as `kunit.py parse --json=FILE LOG` writes them; top-level cases under ""."""
    if not KUNIT_PY.is_file():
        pytest.fail(f"no {KUNIT_PY}: run scripts/build-kunit-kernel.sh first")
    out = tmp_path / "kunit.json"
    # Exits 1 when any test did not pass; the JSON is the answer. Paths absolute: it chdirs.
    done = subprocess.run(
        [sys.executable, str(KUNIT_PY), "parse", f"--json={out}", str(log.resolve())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.is_file(), f"kunit.py wrote no JSON (exit {done.returncode}): {done.stdout}{done.stderr}"
    top = json.loads(out.read_text())
    counts: Counts = {group["name"]: _leaves(group, {}) for group in top["sub_groups"]}
    for case in top["test_cases"]:
        _count(counts.setdefault("", {}), STATUS[case["status"]])
    return counts


def nixvmd_counts(log: Path) -> Counts:
    counts: Counts = {}
    for test in parse_ktap(log.read_text()).tests:
        _count(counts.setdefault(test.collection, {}), test.status.value)
    return counts


# Not compared: kselftest_directives.tap (kselftest's XFAIL/TODO/TIMEOUT/ERROR directives,
# which kunit.py 6.1 does not know: it reads only SKIP) and kunit_subtest_first.log ("# Subtest"
# before the KTAP header, on which kunit.py 6.1 raises "LineStream: going past EOF").
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "kunit_missing_subtests.log",
        "kunit_6_1_console.log",
        "kunit_6_1_failing_console.log",
        "kunit_crash.log",
        "ktap_spec_nested.ktap",
    ],
)
def test_totals_per_suite_agree_with_kunit_py(name: str, tmp_path: Path) -> None:
    expected = kunit_py_counts(DATA / name, tmp_path)

    assert sum(sum(suite.values()) for suite in expected.values()) > 0
    assert nixvmd_counts(DATA / name) == expected
