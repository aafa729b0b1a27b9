"""The nix backend's launch: the built NixOS runner, with the kernel and nixvmd's options in its env.

No Nix runs here: the image was built before (nixvmd.image.nix_inputs), and a kernel
change only changes `NIXPKGS_QEMU_KERNEL_<name>`. The guest asks for its job over the
agent channel (the `hello` frame), so nothing about the run is baked into the image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nixvmd.config.units import qemu_memory
from nixvmd.image.nix import NixImage, image_dir, runner_environment
from nixvmd.vm.cmdline import Launch, MachineSpec, machine_options


def runner_qemu_options(spec: MachineSpec) -> list[str]:
    """What nixvmd appends to the runner's QEMU command line through QEMU_OPTS.

    QEMU_OPTS comes after the runner's own options, and for `-machine accel=`, `-cpu`,
    `-m` and `-smp` the last one wins: nixvmd's accel verdict (KVM hangs on some hosts),
    vm.memory and vm.cpus override what the NixOS configuration set, so changing them is
    a runtime change that needs no rebuild. `-machine accel=` rather than `-accel`, which
    QEMU refuses next to the `-machine accel=kvm:tcg` nixpkgs' runner passes.
    """
    accel = ["-machine", "accel=kvm", "-cpu", "host"] if spec.accel == "kvm" else ["-machine", "accel=tcg"]
    return [
        *accel,
        "-m",
        qemu_memory(spec.memory),
        "-smp",
        str(spec.cpus),
        *machine_options(spec),
        *spec.extra,
    ]


def runner_kernel_params(cmdline: str, accel: str) -> str:
    """QEMU_KERNEL_PARAMS: reboot (= QEMU exits) on panic, then kernel.cmdline.

    The console is the runner's business (ttyS0 with `virtualisation.graphics = false`).
    Under TCG on a busy host the kernel's IO-APIC timer check can miss its ticks and
    panic ("IO-APIC + timer doesn't work!"); `no_timer_check` skips that check.
    """
    timer = "no_timer_check" if accel != "kvm" else ""
    return " ".join(p for p in ("panic=-1", timer, cmdline) if p)


def prepare_nix(
    image: NixImage,
    kernel_path: Path,
    cmdline: str,
    machine: MachineSpec,
    run_dir: Path,
    state_dir: Path,
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """The launch of one run on a built image: `bin/run-<name>-vm` with the §3 environment.

    The runner works in `<state_dir>/image/tmp` (USE_TMPDIR=1), so its empty disks persist
    across boots; the run's `shared/` dir is SHARED_DIR (/tmp/shared in the guest).
    """
    shared = run_dir / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    env = runner_environment(
        image,
        kernel_path,
        runner_qemu_options(machine),
        runner_kernel_params(cmdline, machine.accel),
        state_dir,
        shared,
        os.environ if base_env is None else base_env,
    )
    workdir = Path(env["TMPDIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    image_dir(state_dir).mkdir(parents=True, exist_ok=True)
    return Launch((str(image.runner),), tuple(sorted(env.items())), workdir)
