"""Splat scanner: one splat per kernel report, of the right kind, attributed to the running test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixvmd.results.record import Splat
from nixvmd.suite.splats import SplatScanner, classify, scan_lines, strip_printk

DATA = Path(__file__).parent / "data"


def kinds(text: str, test: str | None = None) -> list[str]:
    return [s.kind for s in scan_lines(text.splitlines(), test)]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("kernel BUG at fs/xfs/xfs_message.c:102!", "bug"),
        (
            "BUG: sleeping function called from invalid context at kernel/locking/rwsem.c:1520",
            "bug",
        ),
        (
            "BUG xfs_inode (Tainted: G    B  ): Objects remaining in xfs_inode on __kmem_cache_shutdown()",
            "bug",
        ),
        ("XFS: Assertion failed: 0, file: fs/xfs/xfs_inode.c, line: 1234", "bug"),
        ("BUG: kernel NULL pointer dereference, address: 0000000000000008", "oops"),
        ("BUG: unable to handle page fault for address: ffffc90000a3f000", "oops"),
        (
            "general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1]",
            "oops",
        ),
        ("Oops: 0000 [#1] PREEMPT SMP NOPTI", "oops"),
        ("Internal error: Oops: 96000004 [#1] PREEMPT SMP", "oops"),
        (
            "WARNING: CPU: 0 PID: 1234 at fs/xfs/xfs_inode.c:1234 xfs_inactive+0x2a0/0x2c0 [xfs]",
            "warning",
        ),
        ("BUG: KASAN: slab-use-after-free in xfs_buf_rele+0x3c/0x4a0 [xfs]", "kasan"),
        ("BUG: KFENCE: out-of-bounds read in test_out_of_bounds_read+0x98/0x200", "kasan"),
        ("UBSAN: array-index-out-of-bounds in fs/xfs/libxfs/xfs_dir2.c:123:4", "ubsan"),
        ("WARNING: possible circular locking dependency detected", "lockdep"),
        ("WARNING: possible recursive locking detected", "lockdep"),
        ("INFO: possible recursive locking detected", "lockdep"),
        ("[ INFO: possible recursive locking detected ]", "lockdep"),
        ("WARNING: suspicious RCU usage", "lockdep"),
        ("WARNING: inconsistent lock state", "lockdep"),
        ("WARNING: bad unlock balance detected!", "lockdep"),
        ("INFO: task kworker/u4:1:78 blocked for more than 120 seconds.", "hung_task"),
        ("watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [fsstress:3456]", "soft_lockup"),
        ("watchdog: Watchdog detected hard LOCKUP on cpu 1", "hard_lockup"),
        ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", "rcu_stall"),
        ("rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu_stall"),
        ("Kernel panic - not syncing: Fatal exception", "panic"),
        ("XFS (vdb): Corruption detected. Unmount and run xfs_repair", "fs_corruption"),
        (
            "XFS (vdb): Metadata corruption detected at xfs_dinode_verify+0x9a/0x6c0, inode 0x83",
            "fs_corruption",
        ),
        (
            'XFS (vdb): metadata I/O error in "xfs_da_read_buf+0xd2/0x120" at daddr 0x40 len 8 error 117',
            "fs_corruption",
        ),
        (
            "EXT4-fs error (device vdb): ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 12",
            "fs_corruption",
        ),
        (
            "BTRFS critical (device vdb): corrupt leaf: root=5 "
            "block=30588928 slot=7, invalid inode generation",
            "fs_corruption",
        ),
        (
            "BTRFS error (device vdb): block=30588928 read time tree block corruption detected",
            "fs_corruption",
        ),
    ],
)
def test_each_kind_is_recognised(line: str, kind: str) -> None:
    assert kinds(f"[   12.345678] {line}") == [kind]


@pytest.mark.parametrize(
    "line",
    [
        "XFS (vdb): Mounting V5 Filesystem",
        "    +WARNING: CPU: 0 PID: 1 at fs/foo.c:1 foo+0x1/0x2",
        "echo 'BUG: not the kernel' from a script: BUG: x",
        "WARNING: The mand mount option has been deprecated and is ignored",
        "EXT4-fs (vdb): mounted filesystem with ordered data mode.",
        "generic/475 3s ... _check_dmesg: something found in dmesg",
    ],
)
def test_ordinary_messages_are_not_splats(line: str) -> None:
    assert kinds(f"[    1.000000] {line}") == []


def test_an_oops_is_one_splat_and_the_panic_it_causes_another() -> None:
    splats = scan_lines((DATA / "splat_null_deref_panic.log").read_text().splitlines(), "generic/002")

    assert splats == [
        Splat("oops", "BUG: kernel NULL pointer dereference, address: 0000000000000008", "generic/002"),
        Splat("panic", "Kernel panic - not syncing: Fatal exception", "generic/002"),
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("splat_kasan.log", "kasan"),
        ("splat_lockdep.log", "lockdep"),
        ("splat_hung_tasks.log", "hung_task"),
    ],
)
def test_a_multi_line_report_is_one_splat(name: str, kind: str) -> None:
    assert kinds((DATA / name).read_text()) == [kind]


def test_reports_one_after_another_are_separate_splats() -> None:
    log = "\n".join(
        (DATA / name).read_text()
        for name in (
            "splat_kasan.log",
            "splat_lockdep.log",
            "splat_hung_tasks.log",
            "splat_null_deref_panic.log",
        )
    )

    assert kinds(log) == ["kasan", "lockdep", "hung_task", "oops", "panic"]


def test_a_burst_of_corruption_messages_is_one_splat_and_a_later_one_another() -> None:
    log = (
        "[  5.000000] XFS (vdb): Metadata corruption detected at "
        "xfs_dinode_verify+0x9a/0x6c0, inode 0x83\n"
        "[  5.000001] XFS (vdb): Unmount and run xfs_repair\n"
        "[  5.000002] XFS (vdb): First 128 bytes of corrupted metadata buffer:\n"
        "[  5.000003] 00000000: 49 4e 41 ed 03 01 00 00 00 00 00 00 00 00 00 00  INA.............\n"
        "[  5.000004] XFS (vdb): Corruption detected. Unmount and run xfs_repair\n"
        "[  9.000000] XFS (vdb): Corruption detected. Unmount and run xfs_repair\n"
    )

    assert kinds(log) == ["fs_corruption", "fs_corruption"]


def test_without_timestamps_an_end_marker_separates_warnings() -> None:
    warning = (
        "------------[ cut here ]------------\n"
        "WARNING: CPU: 0 PID: 1 at fs/a.c:1 a+0x1/0x2\n"
        "Call Trace:\n <TASK>\n a+0x1/0x2\n </TASK>\n"
        "---[ end trace 0000000000000000 ]---\n"
    )

    assert kinds(warning + warning) == ["warning", "warning"]


def test_splats_are_attributed_to_the_test_running_and_a_new_test_starts_a_new_report() -> None:
    scanner = SplatScanner()
    scanner.set_test("generic/001")
    first = scanner.feed("[ 1.000000] XFS (vdb): Corruption detected. Unmount and run xfs_repair")
    scanner.set_test("generic/002")
    second = scanner.feed("[ 1.000001] XFS (vdb): Corruption detected. Unmount and run xfs_repair")

    assert first == Splat(
        "fs_corruption", "XFS (vdb): Corruption detected. Unmount and run xfs_repair", "generic/001"
    )
    assert second is not None and second.test == "generic/002"
    assert scanner.splats == [first, second]


def test_a_kernel_record_glued_to_a_partial_userspace_line_is_found() -> None:
    glued = (
        "generic/002 3s ... [   14.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008"
    )

    assert scan_lines([glued]) == [
        Splat("oops", "BUG: kernel NULL pointer dereference, address: 0000000000000008")
    ]


def test_a_panic_whose_stamp_a_userspace_write_tore_is_still_a_panic() -> None:
    """Seen on a guest console: check's "crash/001" interleaved into the panic's printk stamp."""
    torn = "crash/0[0 1      8.511845] Kernel panic - not syncing: sysrq triggered crash"

    assert scan_lines([torn]) == [Splat("panic", "Kernel panic - not syncing: sysrq triggered crash")]
    # The words alone, in a test's own output, are not a panic.
    assert scan_lines(["grep 'Kernel panic - not syncing' found nothing"]) == []


def test_splats_beyond_the_limit_are_only_counted() -> None:
    scanner = SplatScanner(max_splats=2)
    for second in range(5):
        scanner.feed(f"[ {second * 10}.000000] WARNING: CPU: 0 PID: 1 at fs/a.c:1 a+0x1/0x2")

    assert (len(scanner.splats), scanner.dropped) == (2, 3)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[    1.234567] msg", (1.234567, "msg")),
        ("[    1.234567]     KTAP version 1", (1.234567, "    KTAP version 1")),
        ("[    1.234567][    T1] msg", (1.234567, "msg")),
        ("<4>[ 1234.500000] msg\r\n", (1234.5, "msg")),
        ("[not run] reason", (None, "[not run] reason")),
        ("plain\n", (None, "plain")),
    ],
)
def test_strip_printk(line: str, expected: tuple[float | None, str]) -> None:
    assert strip_printk(line) == expected


def test_classify_ignores_leading_space_only() -> None:
    assert classify("  Kernel panic - not syncing: VFS: Unable to mount root fs") == "panic"
    assert classify("x Kernel panic - not syncing") is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(max_size=80), max_size=50),
    st.lists(st.sampled_from(["t1", "t2", None]), max_size=5),
)
def test_garbage_never_raises(lines: list[str], tests: list[str | None]) -> None:
    scanner = SplatScanner()
    for index, line in enumerate(lines):
        if tests and index % 7 == 0:
            scanner.set_test(tests[index % len(tests)])
        scanner.feed(line)

    assert len(scanner.splats) <= len(lines)
