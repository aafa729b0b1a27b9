"""The nix image backend: build a NixOS VM runner with Nix and give it the environment of §3.

`nix-build '<nixpkgs/nixos>' -A vm --arg configuration ./vm.nix` (or `nix build FLAKE_REF`)
produces `bin/run-<name>-vm`, a script that execs QEMU. The kernel under test reaches it
through `NIXPKGS_QEMU_KERNEL_<name>`, so a kernel change needs no Nix at all; only a change
of the image's own inputs does (see nixvmd.image.nix_inputs). The build's out-link lives in
the state dir (`<state_dir>/image/result`, a GC root), never in the user's tree.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import ImageBuildError, VMError
from nixvmd.process import end_group, start_group

NIXOS_ENTRY = "<nixpkgs/nixos>"
FLAKE_FEATURES = "nix-command flakes"

# Nix turns SIGTERM into an orderly stop that also kills its builders (they run in their
# own sessions, out of reach of a signal to nix's process group); SIGKILL is the last resort.
_TERM_GRACE_S = 10.0
_ERROR_LINES_MAX = 40
_LOG_TAIL_LINES = 10

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_PATH_LITERAL = re.compile(r"/(?:[A-Za-z0-9._+\-]+/)*[A-Za-z0-9._+\-]+")
# Characters the runner's unquoted $QEMU_OPTS and ${NIXPKGS_QEMU_KERNEL_...} would split
# on or expand as globs.
_UNSAFE_UNQUOTED = re.compile(r"[\s*?\[]")
_NIX_STATUS = re.compile(
    r"(these \d+ (derivations|paths) will be (built|fetched)"
    r"|this (derivation|path) will be (built|fetched)"
    r"|  /nix/store/|building '|copying path|warning: )"
)


@dataclass(frozen=True)
class NixImageSpec:
    """What to build: a NixOS configuration for '<nixpkgs/nixos>', or a flake reference.

    `flake` wins when set (image.flake); otherwise `nix_file` (image.nix_file) is the
    configuration. `workdir` is where Nix runs (the config file's directory), so a relative
    flake reference such as ".#vm" and relative paths in `nix_args` mean what they would
    in the user's shell there. `inputs` are image.inputs: extra paths whose change means
    "rebuild".
    """

    nix_file: Path | None = None
    flake: str = ""
    nix_args: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()
    workdir: Path | None = None

    @property
    def is_flake(self) -> bool:
        """True when the image comes from a flake rather than a configuration file."""
        return bool(self.flake)

    def cwd(self) -> Path:
        """The directory Nix runs in."""
        if self.workdir is not None:
            return self.workdir.absolute()
        if self.nix_file is not None:
            return self.nix_file.absolute().parent
        return Path.cwd()

    def configuration(self) -> Path:
        """The absolute path of the configuration file (nix_file form only)."""
        if self.nix_file is None:
            raise ValueError("NixImageSpec has neither a flake nor a nix_file")
        return Path(os.path.normpath(self.cwd() / self.nix_file))


@dataclass(frozen=True)
class NixImage:
    """A built NixOS VM: its store path, its runner script and the system name in it."""

    out_path: Path
    runner: Path
    host_name: str

    @property
    def kernel_env_var(self) -> str:
        """The variable the runner reads the kernel to boot from."""
        return kernel_env_var(self.host_name)


def sanitise_system_name(name: str) -> str:
    """Map a system name to the runner's variable suffix, as qemu-vm.nix does.

    nixpkgs' `sanitizeShellIdent` keeps ASCII letters and digits and turns every other
    character into "_". Nix strings are bytes, so a non-ASCII character becomes one "_"
    per UTF-8 byte ("test-node" -> "test_node").
    """
    return "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else "_" for b in name.encode())


def kernel_env_var(host: str) -> str:
    """The runner's kernel variable for a system named `host` (NIXPKGS_QEMU_KERNEL_<name>)."""
    return f"NIXPKGS_QEMU_KERNEL_{sanitise_system_name(host)}"


def image_dir(state_dir: Path) -> Path:
    """Where the nix backend keeps its out-link and state.json (a run's disks are in its workspace)."""
    return state_dir / "image"


def result_link(state_dir: Path) -> Path:
    """The build's out-link: a GC root that keeps the last good image alive."""
    return image_dir(state_dir) / "result"


def nix_expression_for_path(path: Path) -> str:
    """`path` as a Nix expression for `--arg`: a path literal, else `/. + "..."`."""
    text = str(path)
    if _PATH_LITERAL.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'(/. + "{escaped}")'


def nix_build_command(spec: NixImageSpec, state_dir: Path) -> list[str]:
    """The command that builds the image, with its out-link in the state dir.

    The flake form adds `--print-build-logs` (so build output streams like nix-build's)
    and enables the flakes features itself, so a nix.conf without them still works.
    """
    link = str(result_link(state_dir))
    if spec.is_flake:
        return [
            "nix",
            "build",
            spec.flake,
            "--out-link",
            link,
            "--print-build-logs",
            "--extra-experimental-features",
            FLAKE_FEATURES,
            *spec.nix_args,
        ]
    configuration = nix_expression_for_path(spec.configuration())
    return [
        "nix-build",
        NIXOS_ENTRY,
        "-A",
        "vm",
        "--arg",
        "configuration",
        configuration,
        "--out-link",
        link,
        *spec.nix_args,
    ]


async def build_image(
    spec: NixImageSpec,
    state_dir: Path,
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
) -> NixImage:
    """Build the image, streaming Nix's output (stdout and stderr) line by line to `on_line`.

    Raises ImageBuildError with Nix's error trimmed to its useful part (`log` has it all).
    Cancelling the task stops Nix and its builders before the cancellation propagates.
    """
    if not spec.is_flake and not spec.configuration().exists():
        raise ImageBuildError(
            f"the NixOS configuration {spec.configuration()} does not exist: "
            "create it (nixvmd/nix/vm.nix is a starting point) or fix image.nix_file"
        )
    argv = nix_build_command(spec, state_dir)
    image_dir(state_dir).mkdir(parents=True, exist_ok=True)
    status, lines = await run_nix(argv, spec.cwd(), env, on_line)
    output = "\n".join(lines)
    if status != 0:
        raise ImageBuildError(
            f"{argv[0]} could not build the NixOS image (exit status {status}):\n{trim_nix_error(output)}",
            output,
        )
    return image_from_output(result_link(state_dir).resolve())


def image_from_output(out_path: Path) -> NixImage:
    """The NixImage in a build output: its single `bin/run-<name>-vm`."""
    runners = sorted((out_path / "bin").glob("run-*-vm"))
    if len(runners) != 1:
        found = ", ".join(r.name for r in runners) or "none"
        raise ImageBuildError(
            f"the build output {out_path} should hold one bin/run-<name>-vm but has {found}: "
            "build a NixOS VM (nix-build -A vm, or a flake's config.system.build.vm)"
        )
    runner = runners[0]
    host = runner.name.removeprefix("run-").removesuffix("-vm")
    if not host:
        raise ImageBuildError(f"the runner {runner} has no system name in its file name")
    return NixImage(out_path=out_path, runner=runner, host_name=host)


def runner_environment(
    image: NixImage,
    kernel_path: Path,
    qemu_opts: Sequence[str],
    kernel_params: str,
    workdir: Path,
    shared_dir: Path,
    base_env: Mapping[str, str],
) -> dict[str, str]:
    """The environment that makes the runner boot `kernel_path` with nixvmd's options.

    The runner expands $QEMU_OPTS and the kernel variable unquoted, after `cd "$TMPDIR"`:
    each option must be free of whitespace and glob characters, and relative paths in
    them resolve in TMPDIR. Pass anything else as arguments to the runner ("$@" is
    quoted). `workdir` is TMPDIR (USE_TMPDIR=1) and holds the root disk (NIX_DISK_IMAGE):
    the run's own, so each run boots on fresh disks.
    """
    for opt in qemu_opts:
        if not opt or _UNSAFE_UNQUOTED.search(opt):
            raise VMError(
                f"the QEMU option {opt!r} cannot go through the runner's QEMU_OPTS, which "
                "splits on whitespace and expands globs: pass it as a runner argument instead"
            )
    kernel = kernel_path.absolute()
    if _UNSAFE_UNQUOTED.search(str(kernel)):
        raise VMError(
            f"the NixOS runner cannot boot {kernel}: its path has whitespace or glob "
            "characters; symlink the kernel to a plain path and watch that"
        )
    workdir = workdir.absolute()
    env = dict(base_env)
    env.update(
        {
            image.kernel_env_var: str(kernel),
            "QEMU_OPTS": " ".join(qemu_opts),
            "QEMU_KERNEL_PARAMS": kernel_params,
            "USE_TMPDIR": "1",
            "TMPDIR": str(workdir),
            "NIX_DISK_IMAGE": str(workdir / f"{image.host_name}.qcow2"),
            "SHARED_DIR": str(shared_dir.absolute()),
        }
    )
    return env


def trim_nix_error(output: str) -> str:
    """The useful part of a failed Nix run: its `error:` lines with their code excerpts.

    Evaluation traces (`… while evaluating`) are dropped; a builder failure gets the last
    lines its builder printed when Nix did not quote them itself.
    """
    lines = [clean_line(line) for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        tail = [line for line in lines if line.strip()][-_LOG_TAIL_LINES:]
        return "\n".join(tail) or "(nix printed nothing)"
    kept = _drop_traces(lines[start:])
    builder = next((i for i, line in enumerate(kept) if _is_builder_failure(line)), None)
    if builder is not None and not any("log lines:" in line for line in kept):
        tail = [f"       > {line}" for line in lines[:start] if line.strip() and not _NIX_STATUS.match(line)][
            -_LOG_TAIL_LINES:
        ]
        if tail:
            kept[builder + 1 : builder + 1] = ["       last log lines:", *tail]
    if len(kept) > _ERROR_LINES_MAX:
        hidden = len(kept) - _ERROR_LINES_MAX
        kept = [*kept[:_ERROR_LINES_MAX], f"… ({hidden} more lines in the full log)"]
    return "\n".join(kept).strip("\n")


def _is_builder_failure(line: str) -> bool:
    return line.startswith("error: builder for ") and " failed" in line


def _drop_traces(lines: list[str]) -> list[str]:
    """Drop `… while ...` frames (each with its location and code paragraphs)."""
    kept: list[str] = []
    in_frame = False
    paragraph_start = True
    for line in lines:
        if line.startswith("(use '--show-trace'"):
            continue
        stripped = line.strip()
        if not stripped:
            paragraph_start = True
            if not in_frame:
                kept.append(line)
            continue
        if paragraph_start:
            if stripped.startswith("… "):
                in_frame = True
            elif stripped.startswith("error:"):
                in_frame = False
        paragraph_start = False
        if not in_frame:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


async def run_nix(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    on_line: Callable[[str], None],
) -> tuple[int, list[str]]:
    """Run a Nix command in its own process group; return its status and output lines.

    stdout and stderr are merged and handed to `on_line` a line at a time, without
    colour codes. On cancellation (or any error) Nix gets SIGTERM, then SIGKILL.
    """
    _check_directory(cwd, argv[0])
    try:
        proc = await start_group(
            *argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError as e:
        raise ImageBuildError(
            f"{argv[0]} is not installed or not on PATH: install Nix "
            "(on Debian, run scripts/setup-nix.sh as root)"
        ) from e
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async for line in _read_lines(proc.stdout):
            lines.append(line)
            on_line(line)
        status = await proc.wait()
    finally:
        if proc.returncode is None:
            await end_group(proc, _TERM_GRACE_S)
    return status, lines


def _check_directory(cwd: Path, program: str) -> None:
    if not cwd.is_dir():
        raise ImageBuildError(f"cannot run {program} in {cwd}: no such directory")


async def _read_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    # Not StreamReader.readline: Nix can print lines longer than its 64 KiB limit.
    pending = b""
    while chunk := await stream.read(1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield clean_line(raw.decode(errors="replace"))
    if pending:
        yield clean_line(pending.decode(errors="replace"))


def clean_line(line: str) -> str:
    """Drop colour codes and carriage-return progress (keep what the terminal would show)."""
    line = _ANSI.sub("", line).rstrip("\r")
    return line.rsplit("\r", 1)[-1]
