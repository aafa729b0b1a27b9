"""The control socket under load, abuse and other users: it keeps serving its own user, only them."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client
from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

Start = Callable[[str], DaemonProcess]

REPLY_TIMEOUT = 10.0


@pytest.fixture
def daemon(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> DaemonProcess:
    """A daemon watching an empty kernel tree: it serves the socket and never boots a VM."""
    return daemon_factory(
        direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock")
    )


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _reply(reader: Any) -> dict[str, Any]:
    line = reader.readline()
    assert line, "the daemon closed the connection instead of replying"
    assert line.endswith(b"\n")
    reply: dict[str, Any] = json.loads(line)
    return reply


def _assert_status(status: dict[str, Any], daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    assert status["pid"] == daemon.proc.pid
    assert status["state"] == "idle"
    assert status["kernel"] is None
    assert status["current"] is None


def _assert_healthy(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.text_log()
    _assert_status(daemon.status(), daemon)
    assert "Traceback" not in daemon.text_log()


def test_two_hundred_sequential_clients_each_get_a_status(daemon: DaemonProcess) -> None:
    for _ in range(200):
        with Client(daemon.socket, timeout=REPLY_TIMEOUT) as client:
            _assert_status(client.call("status"), daemon)
    _assert_healthy(daemon)


def test_twenty_concurrent_clients_with_several_requests_each_all_get_replies(
    daemon: DaemonProcess,
) -> None:
    clients, rounds = 20, 5
    all_connected = threading.Barrier(clients, timeout=REPLY_TIMEOUT)
    failures: list[BaseException] = []
    done: list[int] = []
    lock = threading.Lock()

    def client_session(index: int) -> None:
        try:
            with Client(daemon.socket, timeout=REPLY_TIMEOUT) as client:
                all_connected.wait()
                for _ in range(rounds):
                    _assert_status(client.call("status"), daemon)
                    assert client.call("history") == []
                    assert client.call("logs", lines=5)["lines"]
            with lock:
                done.append(index)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=client_session, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "some clients got no reply within 60s"
    assert not failures, failures
    assert sorted(done) == list(range(clients))
    _assert_healthy(daemon)


GARBAGE: list[tuple[str, bytes, str]] = [
    # (what it is, the line sent, what the error reply says)
    ("not-json", b"this is not json\n", "malformed request"),
    ("empty-line", b"\n", "malformed request"),
    ("not-utf8", b"\xff\xfe\x00garbage\n", "malformed request"),
    ("json-array", b"[1, 2, 3]\n", "malformed request"),
    ("json-string", b'"status"\n', "malformed request"),
    ("no-cmd", b'{"command": "status"}\n', "malformed request"),
    ("cmd-not-a-string", b'{"cmd": 42}\n', "malformed request"),
    ("unknown-cmd", b'{"cmd": "frobnicate"}\n', "unknown command 'frobnicate'"),
    ("bad-argument", b'{"cmd": "history", "limit": "many"}\n', "limit must be a whole number, not 'many'"),
    ("bad-tests", b'{"cmd": "run", "tests": "generic/001"}\n', "run: tests must be a list of test names"),
    ("bad-run-id", b'{"cmd": "results", "run_id": 7}\n', "results: run_id must be a string, not 7"),
]


def test_garbage_gets_one_error_reply_and_the_same_connection_keeps_serving(daemon: DaemonProcess) -> None:
    with _connect(daemon.socket) as sock, sock.makefile("rb") as reader:
        for what, request_line, error in GARBAGE:
            sock.sendall(request_line)
            reply = _reply(reader)
            assert reply["ok"] is False, (what, reply)
            assert error in reply["error"], (what, reply)
            sock.sendall(b'{"cmd": "status"}\n')
            reply = _reply(reader)
            assert reply["ok"] is True, (what, reply)
            _assert_status(reply["result"], daemon)
    _assert_healthy(daemon)


def test_all_garbage_on_one_connection_gets_one_reply_each_in_order(daemon: DaemonProcess) -> None:
    lines = [line for _, line, _ in GARBAGE]
    with _connect(daemon.socket) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"".join(lines) + b'{"cmd": "status"}\n')
        replies = [_reply(reader) for _ in range(len(lines) + 1)]
    assert [r["ok"] for r in replies] == [False] * len(lines) + [True]
    _assert_status(replies[-1]["result"], daemon)
    _assert_healthy(daemon)


def test_an_oversized_line_gets_an_error_naming_the_limit_and_new_connections_still_work(
    daemon: DaemonProcess,
) -> None:
    with _connect(daemon.socket) as sock, sock.makefile("rb") as reader:
        # The daemon may hang up before it has read everything; its reply is still queued for us.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b'{"cmd": "status", "pad": "' + b"x" * (200 * 1024) + b'"}\n')
        reply = _reply(reader)
    assert reply["ok"] is False
    assert str(64 * 1024) in reply["error"]
    assert "longer than" in reply["error"]
    _assert_healthy(daemon)


def test_a_line_just_under_the_limit_is_still_served(daemon: DaemonProcess) -> None:
    prefix, suffix = b'{"cmd": "status", "pad": "', b'"}\n'
    line = prefix + b"x" * (64 * 1024 - len(prefix) - len(suffix) - 1) + suffix
    with _connect(daemon.socket) as sock, sock.makefile("rb") as reader:
        sock.sendall(line)
        reply = _reply(reader)
    assert reply["ok"] is True, reply
    _assert_status(reply["result"], daemon)


def test_clients_that_hang_up_early_do_not_disturb_the_daemon(daemon: DaemonProcess) -> None:
    for _ in range(20):
        with _connect(daemon.socket) as sock:
            sock.sendall(b'{"cmd": "sta')
        with _connect(daemon.socket):
            pass
        with _connect(daemon.socket) as sock:
            sock.sendall(b'{"cmd": "status"}\n')  # gone before the reply is written
    # A subscriber that vanishes must not break publishing to the others.
    with _connect(daemon.socket) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd": "subscribe", "events": ["log"]}\n')
        assert _reply(reader)["ok"] is True
    events = daemon.events(["config"])
    assert daemon.call("reload") == {"error": None}
    assert events.wait_for(lambda e: e["event"] == "config", REPLY_TIMEOUT)["ok"] is True
    events.close()
    _assert_healthy(daemon)


def test_socket_is_0600_in_a_0700_directory(daemon: DaemonProcess) -> None:
    sock_stat = daemon.socket.stat()
    assert stat.S_ISSOCK(sock_stat.st_mode)
    assert stat.S_IMODE(sock_stat.st_mode) == 0o600
    assert sock_stat.st_uid == os.getuid()
    dir_stat = daemon.socket.parent.stat()
    assert stat.S_IMODE(dir_stat.st_mode) == 0o700
    assert dir_stat.st_uid == os.getuid()


@pytest.mark.parametrize("mode", [0o1777, 0o755], ids=["sticky-1777", "0755"])
def test_a_socket_directory_nixvmd_did_not_make_keeps_its_mode(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    mode: int,
) -> None:
    sock_dir = short_tmp / "theirs"
    sock_dir.mkdir()
    os.chmod(sock_dir, mode)
    path = sock_dir / "ctl.sock"
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", path))
    assert stat.S_IMODE(sock_dir.stat().st_mode) == mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("ctl.sock.lock").lstat().st_mode) == 0o600
    with Client(path, timeout=REPLY_TIMEOUT) as client:
        _assert_status(client.call("status"), daemon)
    daemon.stop()
    assert stat.S_IMODE(sock_dir.stat().st_mode) == mode
    assert not path.exists()


def test_socket_directories_nixvmd_makes_are_0700(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    path = short_tmp / "a" / "b" / "ctl.sock"
    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", path))
    for made in (short_tmp / "a", short_tmp / "a" / "b"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    with Client(path, timeout=REPLY_TIMEOUT) as client:
        _assert_status(client.call("status"), daemon)


def _start_refused(config: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.daemon.main", "--config", str(config)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_socket_directory_others_may_write_to_is_refused_and_left_alone(
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    sock_dir = short_tmp / "open"
    sock_dir.mkdir()
    os.chmod(sock_dir, 0o777)
    config = tmp_path / "nixvmd.toml"
    config.write_text(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", sock_dir / "ctl.sock"))
    done = _start_refused(config, tmp_path)
    assert done.returncode == 2
    assert f"the socket directory {sock_dir} is writable by other users (mode 0777)" in done.stderr
    assert "chmod go-w" in done.stderr
    assert "Traceback" not in done.stderr
    assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o777
    assert list(sock_dir.iterdir()) == []


_OTHER_USER_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"cmd": "status"}\\n')
except OSError:
    pass  # refused peers may be hung up on before they get to ask
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")
def test_a_connection_from_another_uid_is_refused(daemon: DaemonProcess) -> None:
    nobody = pwd.getpwnam("nobody")

    def become_nobody() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    def connect_as_nobody() -> subprocess.CompletedProcess[str]:
        # The system Python: the test's interpreter may live where nobody cannot read (/root/.pyenv).
        python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        return subprocess.run(
            [python, "-I", "-c", _OTHER_USER_CLIENT, str(daemon.socket)],
            preexec_fn=become_nobody,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )

    # With the modes the daemon sets, another user cannot even reach the socket.
    blocked = connect_as_nobody()
    assert blocked.returncode != 0
    assert "PermissionError" in blocked.stderr, blocked.stderr

    # Opened up by hand, the file modes no longer protect it: SO_PEERCRED must.
    sock_dir = daemon.socket.parent
    os.chmod(sock_dir, 0o755)
    os.chmod(daemon.socket, 0o666)
    try:
        refused = connect_as_nobody()
    finally:
        os.chmod(daemon.socket, 0o600)
        os.chmod(sock_dir, 0o700)
    assert refused.returncode == 0, refused.stderr
    reply = json.loads(refused.stdout)
    assert reply["ok"] is False
    assert "permission denied" in reply["error"]
    assert "result" not in reply
    _assert_healthy(daemon)


def test_a_second_daemon_on_the_same_socket_exits_and_the_first_keeps_serving(
    daemon: DaemonProcess,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    second = subprocess.run(
        [sys.executable, "-m", "nixvmd.daemon.main", "--config", str(daemon.config)],
        cwd=daemon.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "already serves" in second.stderr, second.stderr
    assert str(daemon.socket) in second.stderr
    assert daemon.proc is not None
    assert f"pid {daemon.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert daemon.socket.exists()
    _assert_healthy(daemon)


def test_a_stale_socket_file_is_replaced_by_a_starting_daemon(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    path = short_tmp / "ctl.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    assert stat.S_ISSOCK(path.stat().st_mode)
    with pytest.raises(ConnectionRefusedError):
        _connect(path)

    daemon = daemon_factory(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", path))
    _assert_healthy(daemon)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
