"""A shard of a run as a Nix derivation: its inputs in the store, its expression, its .drv.

The derivation uses `builtins.derivation` alone (no nixpkgs). Its builder is the static
busybox from the store running builder.sh; its inputs are store paths nixvmd added: the
kernel's checked bytes, the base initramfs, the shard's job archive, the QEMU (bundle or
the user's), and for fstests the tree and the host programs the guest needs. Nothing in
it names a path outside /nix/store, so any builder with the `requiredSystemFeatures`
(distribute.system_features) can build it, and the same kernel bytes, guest, config and
test list give the same derivation: the job's nonce and tokens are pinned to a seed made
from the inputs' store paths and the tests (guest/protocol.py `pinned_tokens`; the config
shows in the job and the QEMU command themselves, and host paths that do not reach the
guest, such as the kernel tree's, change nothing), which the builder writes to $out so
the replay makes the same suite (replay.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nixvmd.config.schema import Accel, Config
from nixvmd.distribute.guest_programs import guest_programs
from nixvmd.distribute.nix_command import nix_stdout
from nixvmd.distribute.programs import copy_file, file_key
from nixvmd.distribute.qemu_bundle import store_qemu
from nixvmd.distribute.store import add_bytes, add_to_store, cached_tree
from nixvmd.errors import DistributeError
from nixvmd.guest.protocol import pinned_tokens
from nixvmd.image.direct import sealed_spec
from nixvmd.image.initramfs import build_initramfs, job_archive
from nixvmd.results.space import make_dirs, write_atomic
from nixvmd.suite.registry import make_suite, with_tests
from nixvmd.vm.cmdline import Accelerator, BootSpec, Disk, MachineSpec, direct_command, kernel_cmdline
from nixvmd.watch.kernel_image import KernelImage

OUT = "out"
INITRD = "initrd.cpio"  # the builder assembles it in its build directory
KEEP_SHARDS = 64  # shard expressions (and their .drv GC roots) kept in state_dir/distribute/shards
DEADLINE_SLACK_S = 10  # beyond boot_timeout + suite.timeout: QEMU's own start and stop


@dataclass(frozen=True)
class ShardDerivation:
    """An instantiated shard: its .drv, the output that holds the results, the tests it runs."""

    drv_path: Path
    out_name: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class ShardInputs:
    """Everything a shard's derivation says: store paths, and plain values for its builder."""

    name: str
    system: str
    busybox: str  # a tree: bin/busybox
    script: str
    kernel: str
    initrd: str
    job: str
    qemu: str
    qemu_args: tuple[str, ...]  # the whole command, the QEMU's own words first
    store_trees: tuple[str, ...] = ()  # seen by the guest at their store path (the fstests tree)
    root_trees: tuple[str, ...] = ()  # unpacked over the guest's / (host programs)
    disks: tuple[tuple[str, int], ...] = ()  # (file name, bytes), made sparse by the builder
    keep_disks: tuple[str, ...] = ()  # disks whose tar stream the builder keeps in $out
    deadline_s: int = 0
    seed: str = ""
    system_features: tuple[str, ...] = ()


def nix_string(text: str) -> str:
    """`text` as a Nix string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _store(path: str) -> str:
    return f"(builtins.storePath {nix_string(path)})"


def _list(items: list[str]) -> str:
    return "[ " + " ".join(items) + " ]" if items else "[ ]"


def shard_expression(inputs: ShardInputs) -> str:
    """The Nix expression of one shard's derivation (what `nix-instantiate` and a jobset evaluate)."""
    attrs = [
        ("name", nix_string(inputs.name)),
        ("system", nix_string(inputs.system)),
        ("builder", f'"${{{_store(inputs.busybox)}}}/bin/busybox"'),
        ("args", _list([nix_string("sh"), _store(inputs.script)])),
        ("kernel", _store(inputs.kernel)),
        ("initrd", _store(inputs.initrd)),
        ("job", _store(inputs.job)),
        ("qemu", _store(inputs.qemu)),
        ("storeTrees", _list([_store(p) for p in inputs.store_trees])),
        ("rootTrees", _list([_store(p) for p in inputs.root_trees])),
        ("qemuArgs", nix_string(shlex.join(inputs.qemu_args))),
        ("disks", nix_string(" ".join(f"{name}={size}" for name, size in inputs.disks))),
        ("keepDisks", nix_string(" ".join(inputs.keep_disks))),
        ("deadline", nix_string(str(inputs.deadline_s))),
        ("nixvmdSeed", nix_string(inputs.seed)),
        ("requiredSystemFeatures", _list([nix_string(f) for f in inputs.system_features])),
    ]
    body = "".join(f"  {key} = {value};\n" for key, value in attrs)
    return "builtins.derivation {\n" + body + "}\n"


def shard_accel(config: Config) -> Accelerator:
    """The shard's accelerator: vm.accel, "auto" meaning KVM when the builders must have `kvm`."""
    if config.vm.accel is Accel.AUTO:
        return Accelerator.KVM if "kvm" in config.distribute.system_features else Accelerator.TCG
    return Accelerator(config.vm.accel.value)


def kept_disks(config: Config) -> tuple[str, ...]:
    """The disk images whose content the host reads after the run (fstests' results disk)."""
    if str(config.suite.kind) == "xfstests":
        return (config.xfstests.disk("results").file_name,)
    return ()


def qemu_command(config: Config, kernel_path: str) -> list[str]:
    """The shard's QEMU arguments (after the program): a local run's, sealed, paths in the build dir."""
    accel = shard_accel(config)
    disks = tuple(Disk(Path(d.file_name), d.serial) for d in config.vm.disks)
    vm = config.vm
    spec = MachineSpec(accel, vm.memory, vm.cpus, None, Path("console.log"), disks, vm.qemu_options)
    boot = BootSpec(Path(kernel_path), Path(INITRD), kernel_cmdline(config.kernel.cmdline, accel))
    return direct_command("qemu", spec, boot)[1:]


async def busybox_tree(busybox: Path, state_dir: Path) -> str:
    """The static busybox in the store as bin/busybox (busybox takes its applet from argv[0]'s name)."""
    key = file_key(busybox)

    def make(root: Path) -> None:
        copy_file(busybox, root / "bin" / "busybox", 0o755)

    return await cached_tree(state_dir / "distribute" / "busybox.json", key, "nixvmd-busybox", make)


async def _fstests_tree(config: Config) -> tuple[Config, tuple[str, ...]]:
    """An fstests run's tree in the store, and `config` pointing the guest at it there."""
    if str(config.suite.kind) != "xfstests":
        return config, ()
    # A dev tree goes into the store as it is now: a builder's VM has no share to mount.
    tree = await add_to_store(config.xfstests.dev_tree or config.xfstests.dir, "fstests")
    fstests = dataclasses.replace(config.xfstests, dir=Path(tree), dev_tree=None)
    return dataclasses.replace(config, xfstests=fstests), (tree,)


async def shard_inputs(
    config: Config, kernel: KernelImage, tests: tuple[str, ...], shard: int, state_dir: Path
) -> ShardInputs:
    """Add what shard `shard` of `config`'s run of `kernel` needs to the store; its derivation's inputs."""
    for disk in config.vm.disks:
        if disk.path is not None:
            raise DistributeError(
                f"vm.disks {disk.name!r} is {disk.path} on this host, which a derivation cannot reach; "
                "take it out of vm.disks for shards built by Nix"
            )
    narrowed, store_trees = await _fstests_tree(with_tests(config, tests))
    programs = await guest_programs(narrowed)
    roots = (programs,) if programs else ()
    base = build_initramfs(sealed_spec(narrowed, kernel), state_dir / "initramfs")
    qemu = await store_qemu(narrowed)
    kernel_path = await add_to_store(kernel.bootable, "bzImage")
    initrd = await add_to_store(base.path, "nixvmd-initramfs.cpio")
    made_of = [kernel_path, initrd, qemu.store_path, *store_trees, *roots, *tests]
    seed = hashlib.sha256(json.dumps(made_of).encode()).hexdigest()[:32]
    with pinned_tokens(seed):
        job = make_suite(narrowed, tests).job()
    job = dataclasses.replace(job, env=(*job.env, ("NIXVMD_POWEROFF", "1")))
    script = resources.files("nixvmd.distribute").joinpath("builder.sh").read_bytes()
    return ShardInputs(
        name=f"nixvmd-shard-{shard}",
        system=f"{platform.machine()}-linux",
        busybox=await busybox_tree(narrowed.image.busybox, state_dir),
        script=await add_bytes(script, "nixvmd-shard-builder.sh"),
        kernel=kernel_path,
        initrd=initrd,
        job=await add_bytes(job_archive(job), "nixvmd-job.cpio"),
        qemu=qemu.store_path,
        qemu_args=(*qemu.argv, *qemu_command(narrowed, kernel_path)),
        store_trees=store_trees,
        root_trees=roots,
        disks=tuple((d.file_name, d.size) for d in narrowed.vm.disks),
        keep_disks=kept_disks(narrowed),
        deadline_s=int(narrowed.vm.boot_timeout + narrowed.suite.timeout) + DEADLINE_SLACK_S,
        seed=seed,
        system_features=narrowed.distribute.system_features,
    )


async def instantiate_shard(
    config: Config, kernel: KernelImage, tests: tuple[str, ...], shard: int, state_dir: Path
) -> ShardDerivation:
    """Shard `shard` (running `tests`) of `config`'s run of `kernel` as an instantiated derivation.

    DistributeError when Nix cannot take it (no nix-store, a failed add or evaluation), one
    sentence each; ConfigError when the suite cannot run `tests` alone.
    """
    inputs = await shard_inputs(config, kernel, tests, shard, state_dir)
    text = shard_expression(inputs)
    directory = state_dir / "distribute" / "shards"
    make_dirs(directory, "creating the shard expressions' directory")
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    file = directory / f"{name}.nix"
    write_atomic(file, text, "writing a shard's Nix expression")
    # The .drv is a GC root until newer shards push it out: its inputs stay until it is built.
    root = directory / f"{name}.drv"
    what = f"instantiating shard {shard}"
    await nix_stdout(["nix-instantiate", "--quiet", "--add-root", str(root), str(file)], what)
    _prune(directory)
    return ShardDerivation(root.resolve(), OUT, tests)


def _prune(directory: Path) -> None:
    """Keep the newest KEEP_SHARDS expressions and roots."""
    files = sorted(directory.glob("*.nix"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP_SHARDS:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".drv").unlink(missing_ok=True)
