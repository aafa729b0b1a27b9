"""How nixvmctl shows vmcores: `dump`'s commands, and the vmcore line of results and status."""

from __future__ import annotations

from typing import Any

from nixvmd.ctl.dump import format_dumps
from nixvmd.ctl.format import format_results, format_status

DUMP = {"path": "/s/runs/r1/vmcore", "size": 41799619, "format": "kdump-zlib"}


def _answer(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "run_id": "r1",
        "kernel_version": "6.1.0",
        "dumps": [{**DUMP, "vm": "run", "present": True, "release": "6.1.0"}],
        "vmlinux": "/src/linux/vmlinux",
        "tree": "/src/linux",
        "note": "",
    }
    answer.update(changes)
    return answer


def test_dump_prints_the_crash_command_and_for_drgn_the_conversion_of_a_flattened_file() -> None:
    lines = format_dumps(_answer()).splitlines()

    assert lines == [
        "run r1: 1 vmcore",
        "  /s/runs/r1/vmcore (40 MiB, kdump-zlib, Linux 6.1.0)",
        "    crash /src/linux/vmlinux /s/runs/r1/vmcore",
        "    makedumpfile -R /s/runs/r1/vmcore.raw < /s/runs/r1/vmcore   # drgn needs it unflattened",
        "    drgn -c /s/runs/r1/vmcore.raw -s /src/linux/vmlinux",
    ]


def test_dump_without_a_vmlinux_says_one_is_needed_and_an_elf_dump_goes_to_drgn_as_it_is() -> None:
    elf = {**DUMP, "format": "elf", "vm": "shards/1", "present": True}
    gone = {**DUMP, "path": "/s/runs/r1/resume/1/vmcore", "vm": "resume/1", "present": False}
    text = format_dumps(_answer(vmlinux=None, dumps=[elf, gone]))

    assert "vmlinux is needed to open them: /src/linux/vmlinux does not exist" in text
    assert "  shards/1: /s/runs/r1/vmcore (40 MiB, elf)" in text
    assert "    drgn -c /s/runs/r1/vmcore -s <vmlinux>" in text
    assert "    removed since (debug.keep_dumps keeps only the newest)" in text


def test_results_and_status_show_that_a_run_has_a_vmcore_or_why_it_has_none() -> None:
    run = {
        "id": "r1",
        "outcome": "crashed",
        "kernel_version": "6.1.0",
        "duration_s": 9.0,
        "reason": "kernel panic: sysrq",
        "passed": 0,
        "failed": 1,
        "skipped": 0,
    }
    shown = "  vmcore: /s/runs/r1/vmcore (40 MiB); nixvmctl dump r1 opens it"
    assert shown in format_results({**run, "vmcore": DUMP}).splitlines()
    skipped = "vmcore skipped: 257 MiB needed, 90 MiB free on /state"
    assert f"  {skipped}" in format_results({**run, "vmcore_note": skipped}).splitlines()
    status = format_status({"state": "idle", "kernel": None, "last_run": {**run, "vmcore": DUMP}})
    assert "          vmcore: /s/runs/r1/vmcore (40 MiB); nixvmctl dump r1 opens it" in status.splitlines()
