"""The nix backend with real Nix: fixture builds, the runner's environment, real QEMU boots."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from nixvmd.errors import ImageBuildError, VMError
from nixvmd.image.nix import (
    NixImage,
    NixImageSpec,
    build_image,
    kernel_env_var,
    nix_build_command,
    result_link,
    runner_environment,
    sanitise_system_name,
    trim_nix_error,
)
from tests.image.conftest import INIT_MARKER, NIX_FIXTURES, KernelUnderTest, force_fresh_build
from tests.processes import exits_within

BOOT_TIMEOUT_S = 120
# TCG: /dev/kvm opens here but Linux guests hang under it (DESIGN.md §5).
QEMU_OPTS = ["-accel", "tcg", "-no-reboot"]


def build(spec: NixImageSpec, state_dir: Path, lines: list[str] | None = None) -> NixImage:
    sink = lines if lines is not None else []
    return asyncio.run(build_image(spec, state_dir, sink.append))


def boot(image: NixImage, env: dict[str, str], cwd: Path, console: Path) -> str:
    """Run the runner to the guest's poweroff; return everything it printed."""
    with console.open("wb") as out:
        proc = subprocess.Popen(
            [str(image.runner)],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout=BOOT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = console.read_text(errors="replace")
    assert status == 0, text[-3000:]
    return text


def test_system_names_are_sanitised_as_nixpkgs_does() -> None:
    assert sanitise_system_name("test-node") == "test_node"
    assert sanitise_system_name("a.b_c-1") == "a_b_c_1"
    assert sanitise_system_name("Node42") == "Node42"
    assert sanitise_system_name("né") == "n__"  # Nix strings are bytes: é is two of them
    assert kernel_env_var("test-node") == "NIXPKGS_QEMU_KERNEL_test_node"


def test_nix_file_command_builds_nixos_vm_with_out_link_in_state_dir(tmp_path: Path) -> None:
    spec = NixImageSpec(nix_file=Path("vm.nix"), nix_args=("--show-trace",), workdir=tmp_path)
    assert nix_build_command(spec, tmp_path / "state") == [
        "nix-build",
        "<nixpkgs/nixos>",
        "-A",
        "vm",
        "--arg",
        "configuration",
        str(tmp_path / "vm.nix"),
        "--out-link",
        str(tmp_path / "state" / "image" / "result"),
        "--show-trace",
    ]


def test_configuration_path_that_is_no_nix_path_literal_becomes_an_expression() -> None:
    spec = NixImageSpec(nix_file=Path('/home/me/my "vms"/vm.nix'))
    command = nix_build_command(spec, Path("/state"))
    assert command[6] == '(/. + "/home/me/my \\"vms\\"/vm.nix")'


def test_flake_command_streams_build_logs_and_enables_flakes(tmp_path: Path) -> None:
    spec = NixImageSpec(flake=".#vm", nix_args=("-j", "2"))
    assert nix_build_command(spec, tmp_path) == [
        "nix",
        "build",
        ".#vm",
        "--out-link",
        str(tmp_path / "image" / "result"),
        "--print-build-logs",
        "--extra-experimental-features",
        "nix-command flakes",
        "-j",
        "2",
    ]


def test_runner_environment_follows_the_runner_contract(tmp_path: Path) -> None:
    out = Path("/nix/store/x-nixos-vm")
    image = NixImage(out, out / "bin" / "run-test-node-vm", "test-node")
    env = runner_environment(
        image,
        kernel_path=Path("bzImage"),
        qemu_opts=["-accel", "tcg", "-qmp", "unix:/run/q.sock,server=on,wait=off"],
        kernel_params="quiet nixvmd.run=7",
        workdir=tmp_path / "runner",
        shared_dir=tmp_path / "shared",
        base_env={"PATH": "/usr/bin", "QEMU_NET_OPTS": "hostfwd=tcp::2222-:22"},
    )
    assert env == {
        "PATH": "/usr/bin",
        "QEMU_NET_OPTS": "hostfwd=tcp::2222-:22",
        "NIXPKGS_QEMU_KERNEL_test_node": str(Path.cwd() / "bzImage"),
        "QEMU_OPTS": "-accel tcg -qmp unix:/run/q.sock,server=on,wait=off",
        "QEMU_KERNEL_PARAMS": "quiet nixvmd.run=7",
        "USE_TMPDIR": "1",
        "TMPDIR": str(tmp_path / "runner"),
        "NIX_DISK_IMAGE": str(tmp_path / "runner" / "test-node.qcow2"),
        "SHARED_DIR": str(tmp_path / "shared"),
    }


@pytest.mark.parametrize("opt", ["console=ttyS0 quiet", "path=/tmp/*.sock", ""])
def test_runner_environment_refuses_options_the_runner_would_split(opt: str) -> None:
    image = NixImage(Path("/o"), Path("/o/bin/run-a-vm"), "a")
    with pytest.raises(VMError, match="runner argument"):
        runner_environment(image, Path("/k"), ["-append", opt], "", Path("/s"), Path("/d"), {})


def test_runner_environment_refuses_a_kernel_path_with_spaces() -> None:
    image = NixImage(Path("/o"), Path("/o/bin/run-a-vm"), "a")
    with pytest.raises(VMError, match="symlink the kernel"):
        runner_environment(image, Path("/my kernels/bzImage"), [], "", Path("/s"), Path("/d"), {})


def test_trimmed_eval_error_keeps_the_error_and_its_location_but_not_the_trace() -> None:
    output = "\n".join(
        [
            "error: attribute 'nope' missing",
            "",
            "       at /tmp/vm.nix:1:39:",
            "",
            "            1| { networking.hostName = config.nope.x; }",
            "             |                                       ^",
            "",
            "       … while evaluating 'mergeValue'",
            "",
            "       at /fixture/nixos/default.nix:43:8:",
            "",
            "           43|     a: b:",
            "             |        ^",
            "(use '--show-trace' to show detailed location information)",
        ]
    )
    trimmed = trim_nix_error(output)
    assert trimmed.startswith("error: attribute 'nope' missing")
    assert "/tmp/vm.nix:1:39" in trimmed
    assert "mergeValue" not in trimmed and "default.nix" not in trimmed
    assert "--show-trace" not in trimmed


def test_trimmed_builder_failure_quotes_what_the_builder_printed() -> None:
    output = "\n".join(
        [
            "this derivation will be built:",
            "  /nix/store/abc-nixos-vm.drv",
            "building '/nix/store/abc-nixos-vm.drv'...",
            "configure: error: no C compiler",
            "error: builder for '/nix/store/abc-nixos-vm.drv' failed with exit code 1",
        ]
    )
    assert trim_nix_error(output) == (
        "error: builder for '/nix/store/abc-nixos-vm.drv' failed with exit code 1\n"
        "       last log lines:\n"
        "       > configure: error: no C compiler"
    )


def test_nix_file_build_leaves_its_out_link_in_the_state_dir(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    force_fresh_build(vm_dir)
    state = tmp_path / "state"
    lines: list[str] = []
    image = build(NixImageSpec(nix_file=vm_dir / "vm.nix"), state, lines)
    assert result_link(state).is_symlink()
    assert result_link(state).resolve() == image.out_path
    assert image.out_path.is_relative_to("/nix/store")
    assert image.runner == image.out_path / "bin" / "run-test-node-vm"
    assert image.host_name == "test-node"
    assert image.kernel_env_var == "NIXPKGS_QEMU_KERNEL_test_node"
    assert not (tmp_path / "result").exists() and not (vm_dir / "result").exists()
    assert "fixture: building run-test-node-vm" in lines


def test_a_second_build_of_the_same_inputs_gives_the_same_image(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")
    first = build(spec, tmp_path / "state")
    again = build(spec, tmp_path / "state")
    assert again == first
    (vm_dir / "extra.nix").write_text('{ boot.kernelParams = [ "nixvmd.fixture=edited" ]; }\n')
    assert build(spec, tmp_path / "state").out_path != first.out_path


def test_a_configuration_in_a_directory_with_spaces_builds(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    spaced = vm_dir.rename(tmp_path / "my vm")
    image = build(NixImageSpec(nix_file=spaced / "vm.nix"), tmp_path / "state")
    assert image.host_name == "test-node"


def test_the_runner_boots_the_injected_kernel_and_keeps_its_disks(
    fixture_nix_path: str,
    vm_dir: Path,
    tmp_path: Path,
    kernel_under_test: KernelUnderTest,
) -> None:
    state = tmp_path / "state"
    image = build(NixImageSpec(nix_file=vm_dir / "vm.nix"), state)
    shared = tmp_path / "shared"
    shared.mkdir()
    env = runner_environment(
        image,
        kernel_under_test.path,
        QEMU_OPTS,
        "nixvmd.test=boot",
        state / "runner",
        shared,
        dict(os.environ),
    )

    (state / "runner").mkdir(parents=True, exist_ok=True)
    first = boot(image, env, tmp_path, tmp_path / "console-1.log")
    assert INIT_MARKER in first
    assert f"Linux version {kernel_under_test.version.split()[0]}" in first
    assert "nixvmd.fixture=extra" in first  # from extra.nix, imported by vm.nix
    assert "nixvmd.test=boot" in first  # QEMU_KERNEL_PARAMS
    assert "creating the virtualisation disk image" in first
    disk = state / "runner" / "test-node.qcow2"
    scratch = state / "runner" / "empty0.qcow2"
    assert disk.is_file() and scratch.is_file()

    qemu_io(scratch, "write -P 0x5a 0 4k")
    second = boot(image, env, tmp_path, tmp_path / "console-2.log")
    assert INIT_MARKER in second
    assert "creating the virtualisation disk image" not in second
    assert "Pattern verification failed" not in qemu_io(scratch, "read -P 0x5a 0 4k")


def qemu_io(image: Path, command: str) -> str:
    result = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(image)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def test_a_syntax_error_reports_nix_error_trimmed_and_keeps_the_last_image(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    good = build(NixImageSpec(nix_file=vm_dir / "vm.nix"), state)
    broken = vm_dir / "broken.nix"
    broken.write_bytes((NIX_FIXTURES / "broken" / "syntax-error.nix").read_bytes())
    with pytest.raises(ImageBuildError) as caught:
        build(NixImageSpec(nix_file=broken), state)
    message = str(caught.value)
    assert message.startswith("nix-build could not build the NixOS image (exit status 1)")
    assert "error: syntax error, unexpected '=', expecting ';'" in message
    assert f"{broken}:5:27" in message
    assert "--show-trace" not in message
    assert "--show-trace" in caught.value.log
    assert result_link(state).resolve() == good.out_path


def test_a_build_error_quotes_the_builder(fixture_nix_path: str, tmp_path: Path) -> None:
    spec = NixImageSpec(nix_file=NIX_FIXTURES / "broken" / "build-error.nix")
    with pytest.raises(ImageBuildError) as caught:
        build(spec, tmp_path / "state")
    message = str(caught.value)
    assert "error: builder for '/nix/store/" in message
    assert "the runner could not be assembled (on purpose)" in message


def test_a_missing_configuration_says_what_to_do(fixture_nix_path: str, tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="does not exist: create it"):
        build(NixImageSpec(nix_file=tmp_path / "vm.nix"), tmp_path / "state")


@pytest.mark.parametrize(
    "ref",
    ["path:{dir}#vm", "{dir}#nixosConfigurations.vm.config.system.build.vm", ".#vm"],
)
def test_a_flake_without_inputs_builds_offline(flake_dir: Path, tmp_path: Path, ref: str) -> None:
    spec = NixImageSpec(flake=ref.format(dir=flake_dir), workdir=flake_dir)
    image = build(spec, tmp_path / "state")
    assert image.host_name == "test-node"
    assert result_link(tmp_path / "state").resolve() == image.out_path
    assert not (flake_dir / "result").exists()


def test_a_flake_eval_error_is_reported(flake_dir: Path, tmp_path: Path) -> None:
    (flake_dir / "vm.nix").write_bytes((NIX_FIXTURES / "broken" / "syntax-error.nix").read_bytes())
    with pytest.raises(ImageBuildError, match="nix could not build") as caught:
        build(NixImageSpec(flake=f"path:{flake_dir}#vm"), tmp_path / "state")
    assert "syntax error" in str(caught.value)


def test_cancelling_a_build_stops_nix_and_its_builder(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "builder.pid"
    (vm_dir / "extra.nix").write_text(
        "{ fixture.buildHook = ''\n"
        f"    echo $$ > {pid_file}\n"
        '    echo "fixture: builder is running"\n'
        "    exec sleep 600\n"
        "  ''; }\n"
    )
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")

    async def scenario() -> None:
        running = asyncio.Event()

        def on_line(line: str) -> None:
            if "builder is running" in line:
                running.set()

        task = asyncio.create_task(build_image(spec, tmp_path / "state", on_line))
        await asyncio.wait_for(running.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    builder = int(pid_file.read_text())
    assert exits_within(builder, 10), "the builder outlived its cancelled build"
    assert not _processes_mentioning(str(tmp_path / "state"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found
