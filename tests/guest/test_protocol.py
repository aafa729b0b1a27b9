"""The agent protocol: frames found in console noise, the job as a shell fragment, the agent's shell."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from nixvmd.guest.protocol import Frame, FrameFilter, GuestJob, parse_frame

TRICKY_COMMAND = (
    'echo "it\'s $HOME" \'single "double"\' `id -u` $(true) $((1+1)) ${PATH%%:*} \\\\ back\\n\n'
    "second line\n\ttabbed ; exit 3 # comment é\n\n"
)
SHELLS = {
    "sh": ["/bin/sh"],
    "dash": ["/bin/dash"],
    "busybox": ["/bin/busybox", "sh"],
}


@pytest.fixture
def job_env(tmp_path: Path) -> Path:
    """Where a test writes the job file the agent would source."""
    return tmp_path / "job.env"


def shell(name: str) -> list[str]:
    argv = SHELLS[name]
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (apt-get install -y dash busybox-static)")
    return argv


def source_and_print(argv: list[str], env_file: Path, variable: str) -> str:
    """What `variable` holds after `. env_file` in the given shell."""
    script = f'. {env_file}; printf %s "${variable}"'
    return subprocess.run([*argv, "-c", script], check=True, capture_output=True).stdout.decode()


def test_a_frame_after_kernel_text_on_the_same_line_is_found() -> None:
    line = "[    3.141592] virtio_blk virtio1: [vda] 131072 512-byte@@NIXVMD@@ 1a2b3c 4 exit 3 @@\r\n"

    assert parse_frame(line) == Frame("1a2b3c", 4, "exit", "3")


def test_a_frame_argument_keeps_its_spaces() -> None:
    line = "@@NIXVMD@@ ab 7 module_error /lib/modules/x/virtio_pci.ko: can't insert: Invalid  argument @@"

    frame = parse_frame(line)

    assert frame is not None
    assert frame.argument == "/lib/modules/x/virtio_pci.ko: can't insert: Invalid  argument"


def test_a_frame_without_an_argument_as_the_agent_prints_it() -> None:
    printed = subprocess.run(
        ["/bin/sh", "-c", "printf '\\n@@NIXVMD@@ %s %s %s %s @@\\n' ab12 2 start ''"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    frames = [parse_frame(line) for line in printed.splitlines()]

    assert frames == [None, Frame("ab12", 2, "start", "")]


def test_hello_from_the_agent_channel() -> None:
    assert parse_frame("@@NIXVMD@@ 0 0 hello 6.1.0-56-cloud-amd64 @@") == Frame(
        "0", 0, "hello", "6.1.0-56-cloud-amd64"
    )


@pytest.mark.parametrize(
    "line",
    [
        "",
        "[    1.0] Run /init as init process",
        "@@NIXVMD@@ ab 1 exit 0",  # cut short
        "@@NIXVMD@@ ab 1 exit 0 @",
        "@@NIXVMD@@ XYZ 1 exit 0 @@",  # nonce not hex
        "@@NIXVMD@@ ab one exit 0 @@",
        "@@NIXVMD@@ ab -1 exit 0 @@",
        "@@NIXVMD@@ ab 1 reboot now @@",  # unknown event
        "@@NIXVMD@@ ab 1 EXIT 0 @@",
        "@@NIXVMD@@ ab 1 exit 0 @@ [    2.0] more kernel text",
        "@@NIXVMD@@ab 1 exit 0 @@",
        "NIXVMD ab 1 exit 0 @@",
    ],
)
def test_mangled_lines_are_no_frames(line: str) -> None:
    assert parse_frame(line) is None


def test_the_filter_drops_other_runs_and_repeats() -> None:
    frames = FrameFilter("aa11")

    assert frames.accept(Frame("aa11", 1, "ready", "6.1")) == Frame("aa11", 1, "ready", "6.1")
    assert frames.accept(Frame("bb22", 2, "exit", "0")) is None
    assert frames.accept(Frame("aa11", 1, "ready", "6.1")) is None
    assert frames.accept(Frame("aa11", 2, "start", "command")) == Frame("aa11", 2, "start", "command")
    assert frames.accept(None) is None


def test_the_filter_passes_hello_every_time() -> None:
    frames = FrameFilter("aa11")
    hello = Frame("0", 0, "hello", "6.1.0")

    assert frames.accept(hello) == hello
    assert frames.accept(hello) == hello


def test_the_same_frame_from_two_channels_counts_once() -> None:
    frames = FrameFilter("aa11")
    console = "[   5.0] random: crng init done@@NIXVMD@@ aa11 3 exit 0 @@"
    port = "@@NIXVMD@@ aa11 3 exit 0 @@\n"

    accepted = [frames.accept(parse_frame(line)) for line in (port, console)]

    assert accepted == [Frame("aa11", 3, "exit", "0"), None]


def test_a_jobs_nonce_is_one_frames_can_carry() -> None:
    job = GuestJob(kind="command", command="true")

    frame = parse_frame(f"@@NIXVMD@@ {job.nonce} 1 ready 6.1 @@")

    assert frame is not None
    assert FrameFilter(job.nonce).accept(frame) == frame
    assert GuestJob(kind="command", command="true").nonce != job.nonce


@pytest.mark.parametrize("name", sorted(SHELLS))
def test_the_env_file_gives_back_the_command_exactly(name: str, job_env: Path) -> None:
    job = GuestJob(kind="command", command=TRICKY_COMMAND, nonce="abc123", printk="7")
    job_env.write_text(job.to_env_file())
    argv = shell(name)

    assert source_and_print(argv, job_env, "NIXVMD_COMMAND") == TRICKY_COMMAND
    assert source_and_print(argv, job_env, "NIXVMD_NONCE") == "abc123"
    assert source_and_print(argv, job_env, "NIXVMD_KIND") == "command"
    assert source_and_print(argv, job_env, "NIXVMD_PRINTK") == "7"


@pytest.mark.parametrize("name", sorted(SHELLS))
def test_extra_environment_is_exported_to_the_suite(name: str, job_env: Path) -> None:
    job = GuestJob(kind="xfstests", command="", env=(("FSTYP", "xfs"), ("MKFS_OPTIONS", "-m 'rmapbt=1' $x")))
    job_env.write_text(job.to_env_file())
    script = f'. {job_env}; /bin/sh -c \'printf "%s|%s" "$FSTYP" "$MKFS_OPTIONS"\''

    result = subprocess.run([*shell(name), "-c", script], check=True, capture_output=True, text=True)

    assert result.stdout == "xfs|-m 'rmapbt=1' $x"


def test_an_empty_command_stays_empty(job_env: Path) -> None:
    job_env.write_text(GuestJob(kind="kunit", command="").to_env_file())

    assert source_and_print(["/bin/sh"], job_env, "NIXVMD_COMMAND") == ""


def test_the_wire_form_is_the_env_file_in_base64_on_one_line() -> None:
    job = GuestJob(kind="command", command=TRICKY_COMMAND)

    wire = job.to_wire()

    assert wire.endswith(b"\n")
    assert wire.count(b"\n") == 1
    assert re.fullmatch(rb"[A-Za-z0-9+/=]+\n", wire)
    assert base64.b64decode(wire) == job.to_env_file().encode()


def test_busybox_base64_decodes_the_wire_form_like_the_agent(job_env: Path) -> None:
    job = GuestJob(kind="command", command=TRICKY_COMMAND)

    decoded = subprocess.run(
        ["/bin/busybox", "base64", "-d"], input=job.to_wire(), check=True, capture_output=True
    ).stdout
    job_env.write_bytes(decoded)

    assert source_and_print(["/bin/busybox", "sh"], job_env, "NIXVMD_COMMAND") == TRICKY_COMMAND


@pytest.mark.parametrize("script", ["agent.sh", "smoke.sh"])
@pytest.mark.parametrize("name", ["dash", "busybox"])
def test_guest_scripts_parse(script: str, name: str) -> None:
    text = resources.files("nixvmd.guest").joinpath(script).read_text()

    result = subprocess.run([*shell(name), "-n"], input=text, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert text.startswith("#!/bin/sh\n")


def test_a_syntax_error_would_be_caught() -> None:
    result = subprocess.run(
        [*shell("busybox"), "-n"], input="if true; then\n", capture_output=True, text=True
    )

    assert result.returncode != 0
