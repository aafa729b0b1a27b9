"""nixvmctl exits 0 only when the daemon answered and the request succeeded (DESIGN §2a).

A stand-in daemon (a real Unix socket served by a thread of the test) misbehaves in each way
a daemon can fail to answer; nixvmctl runs as a real subprocess against it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ctl.failures import CTL, assert_failed_with_one_sentence, run_ctl

STATUS = {"state": "idle", "pid": 1, "kernel": None, "current": None, "last_run": None}

Behaviour = Callable[[socket.socket], None]


class FakeDaemon:
    """Accepts connections on `path` and treats each with `behaviour`, in a thread."""

    def __init__(self, path: Path, behaviour: Behaviour) -> None:
        self.path = path
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.listener.settimeout(60)
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(60)
                self.behaviour(conn)
        except BaseException as exc:
            self.failures.append(exc)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert not self.failures, self.failures


@pytest.fixture
def fake_daemon(short_tmp: Path) -> Iterator[Callable[[Behaviour], FakeDaemon]]:
    fakes: list[FakeDaemon] = []

    def start(behaviour: Behaviour) -> FakeDaemon:
        fake = FakeDaemon(short_tmp / f"fake{len(fakes)}.sock", behaviour)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.close()


def _request(conn: socket.socket) -> dict[str, object]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        assert chunk, "nixvmctl hung up without a request"
        data += chunk
    request: dict[str, object] = json.loads(data)
    return request


def _hang_up_at_once(conn: socket.socket) -> None:
    pass  # closed by FakeDaemon without reading anything


def _refuse_with_a_reason(conn: socket.socket) -> None:
    conn.sendall(json.dumps({"ok": False, "error": "too many requests in progress (64); try again"}).encode())
    conn.sendall(b"\n")


def _read_then_hang_up(conn: socket.socket) -> None:
    _request(conn)


def _reset(conn: socket.socket) -> None:
    # Closing a Unix socket with unread data resets it: the request is seen, never taken.
    assert conn.recv(1, socket.MSG_PEEK)


def _half_a_reply(conn: socket.socket) -> None:
    _request(conn)
    conn.sendall(b'{"ok": true, "result": {"sta')


def _not_json(conn: socket.socket) -> None:
    _request(conn)
    conn.sendall(b"hello, I am not nixvmd\n")


def _json_but_not_a_reply(conn: socket.socket) -> None:
    _request(conn)
    conn.sendall(b'["ok", true]\n{"result": 1}\n')


def _say_nothing(conn: socket.socket) -> None:
    _request(conn)
    conn.settimeout(60)
    assert conn.recv(1) == b""  # nixvmctl gives up and hangs up first


DROPPED: list[tuple[str, Behaviour, tuple[str, ...], tuple[str, ...]]] = [
    # (what, how the stand-in behaves, extra arguments, words the message must have)
    # Closed before the request was read: the client sees an EOF or, when its request was
    # already in the daemon's receive buffer, a reset. Either is "no answer", said in words.
    ("hung up before the request", _hang_up_at_once, (), ("the daemon", "the connection")),
    ("refused with a reason", _refuse_with_a_reason, (), ("too many requests in progress",)),
    ("read the request, no reply", _read_then_hang_up, (), ("without answering",)),
    ("reset", _reset, (), ("reset the connection",)),
    ("half a reply", _half_a_reply, (), ("in the middle of its answer",)),
    ("not JSON", _not_json, (), ("malformed reply",)),
    ("JSON but not a reply", _json_but_not_a_reply, (), ("malformed reply",)),
    ("no answer in time", _say_nothing, ("--timeout", "1"), ("did not answer within 1s",)),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(("what", "behaviour", "extra", "words"), DROPPED, ids=[d[0] for d in DROPPED])
def test_status_without_an_answer_exits_non_zero_with_one_sentence(
    fake_daemon: Callable[[Behaviour], FakeDaemon],
    what: str,
    behaviour: Behaviour,
    extra: tuple[str, ...],
    words: tuple[str, ...],
    as_json: bool,
) -> None:
    fake = fake_daemon(behaviour)
    done = run_ctl(fake.path, *extra, "status", *(["--json"] if as_json else []))
    assert_failed_with_one_sentence(done, *words)


def test_no_daemon_at_all_exits_non_zero(short_tmp: Path) -> None:
    assert_failed_with_one_sentence(run_ctl(short_tmp / "nobody.sock", "status"), "no nixvmd is listening")


def test_a_refused_request_exits_non_zero_with_the_daemons_words(
    fake_daemon: Callable[[Behaviour], FakeDaemon],
) -> None:
    def refuse_reload(conn: socket.socket) -> None:
        assert _request(conn) == {"cmd": "reload"}
        reply = {"ok": False, "error": "config refused, the last good one stays in force:\n/x.toml:3: bad"}
        conn.sendall(json.dumps(reply).encode() + b"\n")

    done = run_ctl(fake_daemon(refuse_reload).path, "reload")
    assert done.returncode != 0
    assert done.stderr.startswith("nixvmctl: config refused")
    assert "/x.toml:3: bad" in done.stderr


def _answer_status(conn: socket.socket) -> None:
    assert _request(conn)["cmd"] == "status"
    conn.sendall(json.dumps({"ok": True, "result": STATUS}).encode() + b"\n")


def test_an_answered_status_exits_zero(fake_daemon: Callable[[Behaviour], FakeDaemon]) -> None:
    done = run_ctl(fake_daemon(_answer_status).path, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == STATUS


def test_output_piped_into_a_reader_that_left_is_not_an_error(
    fake_daemon: Callable[[Behaviour], FakeDaemon],
) -> None:
    """`nixvmctl status --json | head -c0`: the daemon answered; the reader just left early."""
    read_end, write_end = os.pipe()
    reader_gone = threading.Event()

    def answer_once_the_reader_left(conn: socket.socket) -> None:
        assert reader_gone.wait(60)
        _answer_status(conn)

    fake = fake_daemon(answer_once_the_reader_left)
    with subprocess.Popen(
        [*CTL, "--socket", str(fake.path), "status", "--json"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        os.close(write_end)
        os.close(read_end)
        reader_gone.set()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stderr == ""
