"""The nix backend's launch: the built NixOS runner, with the kernel and nixvmd's options in its env.

No Nix runs here: the image was built before (nixvmd.image.nix_inputs), and a kernel
change only changes `NIXPKGS_QEMU_KERNEL_<name>`. The guest asks for its job over the
agent channel (the `hello` frame), so nothing about the run is baked into the image.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from nixvmd.config.schema import Network
from nixvmd.config.units import qemu_memory
from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import NixImage, runner_environment
from nixvmd.vm.cmdline import Accelerator, Launch, MachineSpec, kernel_params, machine_options
from nixvmd.vm.network import RESTRICTED, hostfwd_option


def runner_qemu_options(spec: MachineSpec) -> list[str]:
    """What nixvmd appends to the runner's QEMU command line through QEMU_OPTS.

    QEMU_OPTS comes after the runner's own options, and for `-machine accel=`, `-cpu`,
    `-m` and `-smp` the last one wins: nixvmd's accel verdict (KVM hangs on some hosts),
    vm.memory and vm.cpus override what the NixOS configuration set, so changing them is
    a runtime change that needs no rebuild. `-machine accel=` rather than `-accel`, which
    QEMU refuses next to the `-machine accel=kvm:tcg` nixpkgs' runner passes.
    """
    if spec.accel is Accelerator.KVM:
        accel = ["-machine", "accel=kvm", "-cpu", "host"]
    else:
        accel = ["-machine", "accel=tcg"]
    return [
        *accel,
        "-m",
        qemu_memory(spec.memory),
        "-smp",
        str(spec.cpus),
        *machine_options(spec),
        *spec.extra,
    ]


def runner_net_options(network: Network, inherited: str = "") -> str:
    """QEMU_NET_OPTS for the runner's own user netdev (DESIGN §3), after what the environment had.

    The runner always gives the guest a NIC on that netdev, and its environment cannot take
    the NIC away. So with vm.network = "none", `restrict=on` isolates the guest instead:
    slirp still answers its DHCP, but it reaches neither the host nor the outside world.
    With "user", the ssh forward goes there, and nixvmd adds no second NIC.
    """
    ours = hostfwd_option() if network is Network.USER else RESTRICTED
    return ",".join(option for option in (inherited, ours) if option)


def runner_shares_memory(runner: Path) -> bool:
    """Whether the NixOS runner already makes guest RAM a shared memfd (its own virtiofs shares).

    A second memory backend with its own NUMA node would not fit QEMU's -m, so a dev tree
    over virtiofs adds one only when the runner has none (nixpkgs' 9p-era runners, the fixture).
    """
    try:
        return "memory-backend-memfd" in runner.read_text(errors="replace")
    except OSError:
        return False


MODULES_LIST = "modules.list"
MODULES_DIR = "modules"


def share_modules(modules: Sequence[Path], shared: Path) -> tuple[str, ...]:
    """Copy kernel.modules into the shared dir for the guest agent; returns modules.list's lines.

    The .ko files go to `modules/NN-<name>.ko` (the index keeps two modules of the same
    name apart) and `modules.list` names them in load order, relative to itself; the agent
    loads them from /tmp/shared before the suite. Copies, not links: a symlink to a host
    path means nothing in the guest, and a `make` during the run cannot change what boots.
    No modules: no list, and the agent loads nothing.
    """
    if not modules:
        return ()
    target = shared / MODULES_DIR
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for index, ko in enumerate(modules):
        name = f"{MODULES_DIR}/{index:02d}-{ko.name}"
        try:
            shutil.copyfile(ko, shared / name)
        except OSError as exc:
            raise ImageBuildError(
                f"cannot copy the kernel.modules entry {ko} for the guest: {exc.strerror}; "
                "build it (make modules) or remove it from kernel.modules"
            ) from None
        names.append(name)
    (shared / MODULES_LIST).write_text("".join(f"{n}\n" for n in names))
    return tuple(names)


def prepare_nix(
    image: NixImage,
    kernel_path: Path,
    cmdline: str,
    machine: MachineSpec,
    run_dir: Path,
    workdir: Path,
    base_env: Mapping[str, str] | None = None,
    *,
    modules: Sequence[Path] = (),
) -> Launch:
    """The launch of one run on a built image: `bin/run-<name>-vm` with the §3 environment.

    The runner works in `workdir` (USE_TMPDIR=1; the run's own, so its root and empty
    disks are fresh for each run and two runs never share one); the run's `shared/` dir
    is SHARED_DIR (/tmp/shared in the guest), and `modules` (kernel.modules) are copied
    there for the agent to load (`share_modules`).
    """
    shared = run_dir / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    share_modules(modules, shared)
    env = runner_environment(
        image,
        kernel_path,
        runner_qemu_options(machine),
        kernel_params(cmdline, machine.accel, gdb=machine.gdb is not None),
        workdir,
        shared,
        os.environ if base_env is None else base_env,
    )
    env["QEMU_NET_OPTS"] = runner_net_options(machine.network, env.get("QEMU_NET_OPTS", ""))
    workdir.mkdir(parents=True, exist_ok=True)
    return Launch((str(image.runner),), tuple(sorted(env.items())), workdir)
