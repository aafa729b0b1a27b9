"""`nixvmctl ssh`: from status's `current` to ssh's command line, a wait, or one sentence why not."""

from __future__ import annotations

from typing import Any

from nixvmd.ctl.format import format_status
from nixvmd.ctl.ssh import NO_NETWORK, NO_RUN, verdict

COMMAND = "ssh -i /state/ssh/id_ed25519 -p 40022 -o IdentitiesOnly=yes root@127.0.0.1"


def _ssh(**fields: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 40022, "user": "root", "command": COMMAND, **fields}


def test_no_run_and_no_network_are_refused_in_a_sentence() -> None:
    assert verdict(None, None).refusal == NO_RUN
    assert verdict({"run_id": "r1", "phase": "testing"}, None).refusal == NO_NETWORK


def test_a_ready_guest_gives_the_command_line() -> None:
    found = verdict({"run_id": "r1", "ssh": _ssh(ready=True, error=None)}, None)
    assert found.argv == (
        "ssh",
        "-i",
        "/state/ssh/id_ed25519",
        "-p",
        "40022",
        "-o",
        "IdentitiesOnly=yes",
        "root@127.0.0.1",
    )
    assert found.refusal is None and not found.waiting


def test_a_booting_guest_is_waited_for() -> None:
    assert verdict({"run_id": "r1", "ssh": {"port": None, "ready": False, "error": None}}, None).waiting
    assert verdict({"run_id": "r1", "ssh": _ssh(ready=False, error=None)}, None).waiting


def test_a_guest_without_sshd_says_why() -> None:
    found = verdict({"run_id": "r1", "ssh": _ssh(ready=False, error="sshd did not start: bad config")}, None)
    assert found.refusal == "no ssh into the guest: sshd did not start: bad config"


def test_shards_each_have_their_own_port() -> None:
    current = {
        "run_id": "r1",
        "shards": [
            {"index": 0, "ssh": _ssh(ready=True, error=None)},
            {"index": 1, "ssh": _ssh(port=40023, command=COMMAND.replace("40022", "40023"), ready=True)},
        ],
    }
    assert "40022" in verdict(current, None).argv
    assert "40023" in verdict(current, 1).argv
    assert verdict(current, 2).refusal == "run r1 has shards 0 to 1, not 2"
    assert (
        verdict({"run_id": "r1", "ssh": _ssh(ready=True)}, 1).refusal
        == "run r1 has no shards; leave out --shard"
    )


def test_status_shows_the_port_and_whether_sshd_is_up() -> None:
    def shown(access: dict[str, Any]) -> str:
        current = {"run_id": "r1", "phase": "testing", "done": 0, "total": None, "ssh": access}
        status = {"state": "testing", "kernel": None, "image": {}, "current": current, "last_run": None}
        return format_status(status)

    assert "ssh:      waiting for the guest's sshd (port not known yet)" in shown(
        {"port": None, "ready": False}
    )
    assert "ssh:      waiting for the guest's sshd (127.0.0.1:40022)" in shown(_ssh(ready=False))
    assert "ssh:      nixvmctl ssh (127.0.0.1:40022)" in shown(_ssh(ready=True))
    assert "ssh:      none: no sshd" in shown(_ssh(ready=False, error="no sshd"))
