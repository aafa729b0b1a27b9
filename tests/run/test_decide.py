"""decide(transcript): every outcome a run can end with, and which fact wins when several are true."""

from __future__ import annotations

import pytest

from nixvmd.results.record import Outcome
from nixvmd.run.decide import Ending, Transcript, decide

PANIC = "[    3.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009"
OOPS = "[    2.5] BUG: kernel NULL pointer dereference, address: 0000000000000000"


def _finished(status: int) -> Transcript:
    return Transcript(ending=Ending.FINISHED, ready=True, exit_status=status)


def test_a_suite_that_exits_0_passed() -> None:
    assert decide(_finished(0)) == (Outcome.PASSED, "")


def test_a_suite_that_exits_non_zero_failed_saying_the_status() -> None:
    assert decide(_finished(3)) == (Outcome.FAILED, "the suite exited with status 3")


def test_an_exit_without_a_status_is_a_failure_not_a_pass() -> None:
    assert decide(Transcript(ending=Ending.FINISHED, exit_status=None))[0] is Outcome.FAILED


def test_a_panic_is_a_crash_naming_the_line() -> None:
    outcome, reason = decide(Transcript(ending=Ending.CRASHED, panic_line=PANIC, qemu_returncode=0))
    assert outcome is Outcome.CRASHED
    assert reason == f"kernel panic: {PANIC}"


def test_an_oops_before_qemu_went_away_is_a_crash() -> None:
    outcome, reason = decide(Transcript(ending=Ending.EXITED, ready=True, oops_line=OOPS, qemu_returncode=0))
    assert (outcome, reason) == (Outcome.CRASHED, f"kernel oops: {OOPS}")


def test_a_guest_that_halts_by_itself_crashed() -> None:
    t = Transcript(ending=Ending.HALTED, ready=True, halt_line="reboot: System halted")
    assert decide(t) == (
        Outcome.CRASHED,
        "the guest halted by itself (reboot: System halted) before the suite ended",
    )


def test_an_agent_error_is_a_crash_with_the_agents_words() -> None:
    t = Transcript(ending=Ending.CRASHED, ready=True, agent_errors=["cannot mount /proc", "no shell"])
    assert decide(t) == (Outcome.CRASHED, "cannot mount /proc; no shell")
    assert decide(Transcript(ending=Ending.CRASHED)) == (Outcome.CRASHED, "the guest agent failed")


def test_a_guest_that_shuts_down_by_itself_crashed() -> None:
    t = Transcript(ending=Ending.EXITED, ready=True, shutdown_reason="guest-shutdown", qemu_returncode=0)
    assert decide(t) == (
        Outcome.CRASHED,
        "the guest went down by itself (guest-shutdown) before the suite ended",
    )
    # QEMU with QMP pauses such a guest (-action shutdown=pause): its SHUTDOWN event ends the wait.
    paused = Transcript(ending=Ending.STOPPED, ready=True, shutdown_reason="guest-reset")
    assert decide(paused) == (
        Outcome.CRASHED,
        "the guest went down by itself (guest-reset) before the suite ended",
    )


def test_a_timeout_says_which_wait_timed_out() -> None:
    t = Transcript(ready=True, timeout="the suite did not finish within suite.timeout (3s)")
    assert decide(t) == (Outcome.TIMEOUT, "the suite did not finish within suite.timeout (3s)")


def test_a_module_that_did_not_load_is_the_machinerys_error() -> None:
    t = Transcript(ending=Ending.CRASHED, module_errors=["xfs: not found", "virtiofs: exec format error"])
    assert decide(t) == (
        Outcome.ERROR,
        "a kernel module did not load: xfs: not found; virtiofs: exec format error",
    )


def test_a_disk_write_the_host_failed_is_the_machinerys_error() -> None:
    error = "QEMU paused the guest: a write to nixvmd-disk0 failed on the host (Input/output error)"
    t = Transcript(ending=Ending.BROKEN, ready=True, machinery_error=error)
    assert decide(t) == (Outcome.ERROR, error)


def test_qemu_dying_on_its_own_is_the_machinerys_error_never_the_kernels() -> None:
    outcome, reason = decide(Transcript(ending=Ending.EXITED, qemu_returncode=1))
    assert outcome is Outcome.ERROR
    assert reason == "QEMU exited unexpectedly (exit status 1); see qemu.log and console.log"
    # A shutdown QEMU was asked for (or one with a failing QEMU) is not the guest's doing.
    asked = Transcript(ending=Ending.EXITED, shutdown_reason="host-qmp-quit", qemu_returncode=0)
    assert decide(asked)[0] is Outcome.ERROR
    failing = Transcript(ending=Ending.EXITED, shutdown_reason="guest-shutdown", qemu_returncode=1)
    assert decide(failing)[0] is Outcome.ERROR


def test_no_room_on_the_host_is_an_error_whatever_else_happened() -> None:
    full = "no space left on /state (tmpfs): the guest's write into the disk image /state/x.img failed"
    t = Transcript(ending=Ending.BROKEN, machinery_error=full, space_error=full, panic_line=PANIC)
    assert decide(t) == (Outcome.ERROR, full)


@pytest.mark.parametrize(
    ("facts", "outcome", "reason_starts"),
    [
        # The kernel died: a panic wins over the exit status that came before it.
        ({"ending": Ending.FINISHED, "exit_status": 0, "panic_line": PANIC}, Outcome.CRASHED, "kernel panic"),
        # ... and over an agent error or a halt that came with it.
        (
            {"ending": Ending.CRASHED, "agent_errors": ["x"], "panic_line": PANIC},
            Outcome.CRASHED,
            "kernel panic",
        ),
        (
            {"ending": Ending.HALTED, "halt_line": "reboot: Power down", "panic_line": PANIC},
            Outcome.CRASHED,
            "kernel",
        ),
        # A module that did not load wins over the suite's status: the suite did not run as configured.
        (
            {"ending": Ending.FINISHED, "exit_status": 1, "module_errors": ["m"]},
            Outcome.ERROR,
            "a kernel module",
        ),
        # A finished suite wins over what happened after (an oops, QEMU's exit status).
        ({"ending": Ending.FINISHED, "exit_status": 0, "oops_line": OOPS}, Outcome.PASSED, ""),
        # The host failing a write wins over an agent error and an oops.
        (
            {
                "ending": Ending.CRASHED,
                "machinery_error": "QEMU paused",
                "agent_errors": ["x"],
                "oops_line": OOPS,
            },
            Outcome.ERROR,
            "QEMU paused",
        ),
        # An agent error wins over a halt; a halt over an oops; an oops over QEMU's exit.
        ({"ending": Ending.CRASHED, "agent_errors": ["x"], "halt_line": "h"}, Outcome.CRASHED, "x"),
        ({"ending": Ending.HALTED, "halt_line": "h", "oops_line": OOPS}, Outcome.CRASHED, "the guest halted"),
        ({"ending": Ending.EXITED, "oops_line": OOPS, "qemu_returncode": 1}, Outcome.CRASHED, "kernel oops"),
        # A timeout wins over what the guest said before it (the wait ended on the clock).
        ({"timeout": "t", "oops_line": OOPS, "panic_line": PANIC}, Outcome.TIMEOUT, "t"),
    ],
)
def test_precedence(facts: dict[str, object], outcome: Outcome, reason_starts: str) -> None:
    got, reason = decide(Transcript(**facts))  # type: ignore[arg-type]
    assert got is outcome
    assert reason.startswith(reason_starts)
