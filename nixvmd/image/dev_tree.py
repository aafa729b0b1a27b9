"""xfstests.dev_tree in the guest: which share carries it (virtiofs or 9p) and what QEMU gets for it.

The user's fstests working tree is shared read-only with tag `XFSTESTS_DEV_TREE_TAG`; the
guest's fstests runner (suite/xfstests/guest.sh) mounts it at xfstests.dir before check
runs, so an edited test reaches the next VM with no image build. Both backends use this:
the direct backend puts the share's modules in its initramfs, the nix backend passes the
options through QEMU_OPTS (its kernel must have the file system built in, as NixOS needs).

"auto" picks what the kernel has, from its modules tree (kernel.modules_dir): virtiofs
first (faster: DESIGN §5, cache=always), else 9p; with no modules tree to ask, virtiofs —
what nixvmd's host root share and NixOS's own shares (nixpkgs since 2026) need too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import XFSTESTS_DEV_TREE_TAG, Config, DevTreeShare
from nixvmd.errors import ImageBuildError
from nixvmd.image.modules import resolve_modules_dir, select_modules
from nixvmd.vm.cmdline import MachineSpec, shared_memory_options, virtfs_options, virtiofs_device_options
from nixvmd.vm.virtiofsd import VIRTIOFSD, Export
from nixvmd.watch.kernel_image import KernelImage, release_of

# The guest modules each share needs when they are not built in (dependencies follow).
SHARE_MODULES = {
    DevTreeShare.VIRTIOFS: ("fuse", "virtiofs"),
    DevTreeShare.NINEP: ("9pnet_virtio", "9p"),
}


@dataclass(frozen=True)
class TreeShare:
    """How one run's guest gets the dev tree: QEMU options, virtiofsd exports (virtiofs only)."""

    kind: DevTreeShare
    options: tuple[str, ...]
    exports: tuple[Export, ...] = ()


def kernel_modules_root(config: Config, kernel: KernelImage) -> Path | None:
    """The kernel's lib/modules/<release> tree when kernel.modules_dir names one."""
    if config.kernel.modules_dir is None:
        return None
    return resolve_modules_dir(config.kernel.modules_dir, release_of(kernel.version))


def share_kind(choice: DevTreeShare, modules_root: Path | None) -> DevTreeShare:
    """The share the dev tree goes over: `choice`, or for "auto" the first the kernel has.

    ImageBuildError when the modules tree shows neither (built in or as modules).
    """
    if choice is not DevTreeShare.AUTO:
        return choice
    if modules_root is None:
        return DevTreeShare.VIRTIOFS
    for kind, modules in SHARE_MODULES.items():
        try:
            select_modules(modules_root, modules)
        except ImageBuildError:
            continue
        return kind
    raise ImageBuildError(
        f"xfstests.dev_tree: the kernel has neither virtiofs nor 9p (modules in {modules_root}); "
        "enable CONFIG_VIRTIO_FS, or CONFIG_9P_FS with CONFIG_NET_9P_VIRTIO"
    )


def share_modules(config: Config, modules_root: Path | None) -> tuple[str, ...]:
    """The guest modules the dev tree's share needs (none without a dev tree or a modules tree)."""
    if not _shared(config) or modules_root is None:
        return ()
    return SHARE_MODULES[share_kind(config.xfstests.dev_tree_share, modules_root)]


def tree_share(
    config: Config, machine: MachineSpec, modules_root: Path | None, *, memory: int | None
) -> TreeShare | None:
    """The dev tree's share for a run of `machine` (virtiofsd's socket beside its QMP socket);
    None without a dev tree.

    `memory`: the guest's RAM, to be made a shared memfd for virtiofs; None when another
    vhost-user-fs device (the host root) or the NixOS runner has done that already.
    """
    tree = config.xfstests.dev_tree
    if tree is None or not _shared(config):
        return None
    kind = share_kind(config.xfstests.dev_tree_share, modules_root)
    if kind is DevTreeShare.NINEP:
        return TreeShare(kind, tuple(virtfs_options(tree, XFSTESTS_DEV_TREE_TAG)))
    require_virtiofsd("xfstests.dev_tree over virtiofs", 'set xfstests.dev_tree_share = "9p"')
    socket_dir = sockets_of(machine)
    export = Export(tree, socket_dir / "fstests.sock", socket_dir / "fstests")
    memory_options = shared_memory_options(memory) if memory is not None else []
    device = virtiofs_device_options(export.socket, XFSTESTS_DEV_TREE_TAG, "nixvmd-fstests")
    return TreeShare(kind, (*memory_options, *device), (export,))


def sockets_of(machine: MachineSpec) -> Path:
    """The run's socket dir, where virtiofsd sockets go; ImageBuildError for a sealed VM (no sockets)."""
    if machine.sockets is None:
        raise ImageBuildError(
            "image.share_host_root and xfstests.dev_tree need a VM nixvmd talks to (not a sealed one)"
        )
    return machine.sockets.qmp.parent


def _shared(config: Config) -> bool:
    """Whether runs of `config` get the dev tree: fstests runs with one configured."""
    return config.xfstests.dev_tree is not None and str(config.suite.kind) == "xfstests"


def require_virtiofsd(what: str, instead: str) -> None:
    """ImageBuildError saying why `what` cannot share over virtiofs here (no virtiofsd, not root)."""
    if not os.access(VIRTIOFSD, os.X_OK):
        raise ImageBuildError(f"{what} needs {VIRTIOFSD}; install qemu-system-common or {instead}")
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"{what} needs root (virtiofsd and its read-only bind mount); run nixvmd as root or {instead}"
        )
