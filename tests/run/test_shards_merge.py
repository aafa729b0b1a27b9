"""The shards of a run merged into its record: shard tags, artefact paths, the worst outcome."""

from __future__ import annotations

import pytest

from nixvmd.results.record import Outcome, RunRecord, Splat, TestResult, TestStatus
from nixvmd.results.store import junit_xml
from nixvmd.run.shard_merge import merge_shards, shard_artefact


def shard(outcome: Outcome | None, reason: str = "", *tests: TestResult, **phases: float) -> RunRecord:
    record = RunRecord("r/shards/x", "xfstests", "/k", "6.1.0", "direct", 0.0, outcome=outcome, reason=reason)
    record.tests = list(tests)
    record.phases = dict(phases)
    return record


def run() -> RunRecord:
    return RunRecord("r", "xfstests", "/k", "", "direct", 0.0)


PASS = TestResult("generic/001", TestStatus.PASS, 1.0, collection="xfs")
FAIL = TestResult(
    "generic/002",
    TestStatus.FAIL,
    1.0,
    "output mismatch",
    ("results/xfs/generic/002.out.bad", "output.log", "/abs/elsewhere"),
    "xfs",
)


def test_every_test_carries_its_shard_and_round_trips_in_run_json() -> None:
    record = run()
    merge_shards(
        record,
        [shard(Outcome.PASSED, "", PASS), shard(Outcome.FAILED, "tests failed", FAIL)],
        cancelled=False,
    )

    assert [(t.name, t.shard) for t in record.tests] == [("generic/001", 0), ("generic/002", 1)]
    again = RunRecord.from_json(record.to_json())
    assert [t.shard for t in again.tests] == [0, 1]
    assert [t["shard"] for t in record.to_json()["tests"]] == [0, 1]
    assert '<property name="shard" value="1" />' in junit_xml(record)


def test_a_test_of_a_run_without_shards_has_no_shard_key() -> None:
    assert "shard" not in PASS.to_json()
    assert TestResult.from_json(PASS.to_json()).shard is None


def test_artefacts_move_under_results_of_their_shard_and_the_rest_under_its_directory() -> None:
    record = run()
    merge_shards(record, [shard(Outcome.PASSED), shard(Outcome.FAILED, "", FAIL)], cancelled=False)

    assert record.tests[0].artefacts == (
        "results/1/xfs/generic/002.out.bad",
        "shards/1/output.log",
        "/abs/elsewhere",
    )
    assert shard_artefact("results/standin-check.log", 0) == "results/0/standin-check.log"


@pytest.mark.parametrize(
    ("outcomes", "expected", "reason"),
    [
        ((Outcome.PASSED, Outcome.FAILED), Outcome.FAILED, "shard 1: why failed"),
        ((Outcome.FAILED, Outcome.CRASHED), Outcome.CRASHED, "shard 1: why crashed"),
        ((Outcome.TIMEOUT, Outcome.CRASHED), Outcome.CRASHED, "shard 1: why crashed"),
        ((Outcome.TIMEOUT, Outcome.FAILED), Outcome.TIMEOUT, "shard 0: why timeout"),
        ((Outcome.CRASHED, Outcome.ERROR), Outcome.ERROR, "shard 1: why error"),
        # A shard cancelled because another broke counts for nothing.
        ((Outcome.ERROR, Outcome.CANCELLED), Outcome.ERROR, "shard 0: why error"),
        ((Outcome.CRASHED, Outcome.CRASHED), Outcome.CRASHED, "shard 0: why crashed"),
    ],
)
def test_the_worst_shard_decides_the_outcome_and_its_reason_names_it(
    outcomes: tuple[Outcome, Outcome], expected: Outcome, reason: str
) -> None:
    record = run()
    merge_shards(record, [shard(o, f"why {o}") for o in outcomes], cancelled=False)

    assert (record.outcome, record.reason) == (expected, reason)


def test_a_cancelled_run_is_cancelled_whatever_its_shards_found() -> None:
    record = run()
    merge_shards(
        record, [shard(Outcome.CRASHED, "panic"), shard(Outcome.CANCELLED, "cancelled")], cancelled=True
    )

    assert record.outcome is Outcome.CANCELLED


def test_a_passing_run_keeps_each_shards_note() -> None:
    record = run()
    merge_shards(
        record,
        [shard(Outcome.PASSED, "the kernel logged 1 splat(s): warning"), shard(Outcome.PASSED)],
        cancelled=False,
    )

    assert (record.outcome, record.reason) == (
        Outcome.PASSED,
        "shard 0: the kernel logged 1 splat(s): warning",
    )


def test_splats_of_all_shards_and_the_longest_shards_phases() -> None:
    first = shard(Outcome.PASSED, "", boot=3.0, suite=10.0)
    second = shard(Outcome.FAILED, "", boot=5.0, suite=4.0)
    first.splats = [Splat("warning", "WARNING: at x", "generic/001")]
    second.splats = [Splat("oops", "Oops: 0002", "generic/002")]
    record = run()
    merge_shards(record, [first, second], cancelled=False)

    assert [s.kind for s in record.splats] == ["warning", "oops"]
    assert record.phases == {"boot": 5.0, "suite": 10.0}
    assert record.kernel_version == "6.1.0"


def test_shards_that_never_ended_make_an_error_not_a_pass() -> None:
    record = run()
    merge_shards(record, [shard(None), shard(None)], cancelled=False)

    assert record.outcome is Outcome.ERROR


def test_a_run_is_cached_only_when_every_shard_is_and_it_round_trips() -> None:
    cached = [shard(Outcome.PASSED, "", PASS), shard(Outcome.PASSED, "", PASS)]
    for k, built_at in enumerate((20.0, 10.0)):
        cached[k].cached, cached[k].built_at = True, built_at
    one_built = [cached[0], shard(Outcome.PASSED, "", PASS)]
    all_cached, partly = run(), run()

    merge_shards(all_cached, cached, cancelled=False)
    merge_shards(partly, one_built, cancelled=False)

    assert (all_cached.cached, all_cached.built_at) == (True, 10.0)
    assert (partly.cached, partly.built_at) == (False, None)
    again = RunRecord.from_json(all_cached.to_json())
    assert (again.cached, again.built_at) == (True, 10.0)
    assert "cached" not in partly.to_json() and "built_at" not in partly.to_json()
