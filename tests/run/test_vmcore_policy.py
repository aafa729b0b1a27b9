"""Which endings get a vmcore under [debug] dump, and a run's vmcore when its shards each had their own."""

from __future__ import annotations

import pytest

from nixvmd.config.schema import DumpPolicy
from nixvmd.results.record import Outcome, RunRecord, Vmcore
from nixvmd.run.decide import Transcript
from nixvmd.run.shard_merge import merge_shards
from nixvmd.run.vmcore import dump_timeout, wanted

CRASH, NEVER, ON_TIMEOUT = DumpPolicy.CRASH, DumpPolicy.NEVER, DumpPolicy.ALWAYS_ON_TIMEOUT
PLAIN = Transcript()
OOPSED = Transcript(oops_line="Oops: general protection fault")


@pytest.mark.parametrize(
    ("policy", "outcome", "transcript", "dumped"),
    [
        (CRASH, Outcome.CRASHED, PLAIN, True),
        (CRASH, Outcome.TIMEOUT, PLAIN, False),  # a hang alone: only with "always-on-timeout"
        (CRASH, Outcome.TIMEOUT, OOPSED, True),  # an oops that killed the agent, then the hang
        (ON_TIMEOUT, Outcome.TIMEOUT, PLAIN, True),
        (ON_TIMEOUT, Outcome.CRASHED, PLAIN, True),
        (NEVER, Outcome.CRASHED, OOPSED, False),
        (CRASH, Outcome.PASSED, OOPSED, False),  # the suite finished: the kernel went on
        (ON_TIMEOUT, Outcome.FAILED, PLAIN, False),
        (ON_TIMEOUT, Outcome.ERROR, OOPSED, False),  # the machinery broke: not the kernel's memory to keep
        (CRASH, Outcome.CANCELLED, PLAIN, False),
    ],
)
def test_which_endings_are_dumped(
    policy: DumpPolicy, outcome: Outcome, transcript: Transcript, dumped: bool
) -> None:
    assert wanted(policy, outcome, transcript) is dumped


def test_a_bigger_guest_may_take_longer_to_dump_never_less_than_a_minute() -> None:
    assert dump_timeout(256 << 20) == 60
    assert dump_timeout(8 << 30) == 960


def _shard(k: int, outcome: Outcome, vmcore: Vmcore | None = None, note: str = "") -> RunRecord:
    record = RunRecord(f"r/shards/{k}", "command", "/k", "6.1", "direct", 0.0, outcome, vmcore=vmcore)
    record.vmcore_note = note
    return record


def test_a_sharded_runs_vmcore_is_its_worst_shards_and_every_shards_note_is_kept() -> None:
    timed_out = Vmcore("/s/runs/r/shards/0/vmcore", 1, "elf")
    crashed = Vmcore("/s/runs/r/shards/2/vmcore", 2, "kdump-zlib")
    shards = [
        _shard(0, Outcome.TIMEOUT, timed_out),
        _shard(1, Outcome.CRASHED, None, "vmcore not taken: QEMU's dump did not finish within 60s"),
        _shard(2, Outcome.CRASHED, crashed),
    ]
    record = RunRecord("r", "command", "/k", "6.1", "direct", 0.0)

    merge_shards(record, shards, cancelled=False)

    assert record.reason.startswith("shard 1: ")  # the worst shard (crashed) has no dump
    assert record.vmcore == timed_out  # so the first shard with one gives the run's
    assert record.vmcore_note == "shard 1: vmcore not taken: QEMU's dump did not finish within 60s"
