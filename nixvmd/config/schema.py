"""The configuration as frozen dataclasses and enums: what the rest of nixvmd reads.

Each key is declared once, with its converter, default and doc, in settings.py; the defaults
here are what code that builds these classes itself gets, and a test holds them to the
declarations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class Backend(enum.StrEnum):
    DIRECT = "direct"
    NIX = "nix"


class Accel(enum.StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


class Network(enum.StrEnum):
    """The guest's network: none (hermetic runs), or QEMU's user-mode network with ssh forwarded."""

    NONE = "none"
    USER = "user"


class DiskFormat(enum.StrEnum):
    """A user's disk's format, as QEMU opens it (vm.disks `format`)."""

    RAW = "raw"
    QCOW2 = "qcow2"


class NotifyEvent(enum.StrEnum):
    """What about a run can trigger a notification: the names `notify.on` accepts."""

    REGRESSION = "regression"
    FIRST_REGRESSION = "first-regression"  # while the run goes on: its first regression
    FAIL = "fail"
    CRASH = "crash"
    TIMEOUT = "timeout"
    BUILD_ERROR = "build-error"
    PASS = "pass"
    FIXED = "fixed"


class Engine(enum.StrEnum):
    """Where a run's shards run: VMs on this host, or Nix derivations on the user's builders."""

    LOCAL = "local"
    NIX = "nix"


class DevTreeShare(enum.StrEnum):
    """How xfstests.dev_tree reaches the guest: chosen from the kernel ("auto"), or the user's word."""

    AUTO = "auto"
    VIRTIOFS = "virtiofs"
    NINEP = "9p"


class OnChange(enum.StrEnum):
    """What a change in the fstests tree (xfstests.dir on the host) starts."""

    CHANGED = "changed"  # the changed tests only; the configured run when fstests itself changed
    ALL = "all"  # the configured run, whatever changed
    OFF = "off"  # nothing: the tree is not watched


class SuiteKind(enum.StrEnum):
    XFSTESTS = "xfstests"
    KUNIT = "kunit"
    KSELFTEST = "kselftest"
    COMMAND = "command"


@dataclass(frozen=True)
class KernelConfig:
    tree: Path
    image: Path
    cmdline: str = ""
    modules: tuple[Path, ...] = ()
    modules_dir: Path | None = None
    build: str = 'make -j"$(nproc)" bzImage'  # what bisect runs in its worktree to build a step


@dataclass(frozen=True)
class ImageConfig:
    backend: Backend | str = Backend.DIRECT  # a str: a plugin's backend (config/extensions.py)
    nix_file: Path | None = Path("vm.nix")  # relative: to the config file's directory
    flake: str = ""
    nix_args: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()
    busybox: Path = Path("/bin/busybox")
    share_host_root: bool = False


@dataclass(frozen=True)
class DiskConfig:
    """A guest disk with a stable serial: a sparse image nixvmd makes (`size`), or the user's `path`.

    A `path` disk (an image file or a host block device) is the user's: nixvmd attaches it
    as it is and never creates, resizes or removes it (nixvmd.image.host_disks); its `size` is 0.
    """

    name: str
    path: Path | None = field(default=None, kw_only=True)  # keyword-only: (name, size, serial) still read
    size: int
    serial: str
    readonly: bool = False
    format: DiskFormat | None = None  # a path disk's; None: as nixvmd.image.host_disks decides

    @property
    def file_name(self) -> str:
        """Its image file's name in a run's disk directory (`results.store.disks_dir`)."""
        return f"{self.name}.img"


@dataclass(frozen=True)
class VMConfig:
    accel: Accel = Accel.AUTO
    memory: int = 2 << 30
    cpus: int = 2
    qemu: str = "qemu-system-x86_64"
    qemu_options: tuple[str, ...] = ()
    boot_timeout: float = 120.0
    disks: tuple[DiskConfig, ...] = ()
    usb: tuple[tuple[int, int], ...] = ()  # host USB devices passed through, as (vendor id, product id)
    network: Network = Network.NONE


@dataclass(frozen=True)
class SuiteConfig:
    kind: SuiteKind | str = SuiteKind.COMMAND  # a str: a plugin's suite kind
    command: str = "uname -r"
    timeout: float = 1800.0
    baseline: Path | None = None  # known failures; None: <state_dir>/baseline/<kind>
    rerun_failed: int = 0  # run new failures again this many times to tell flaky ones
    shards: int | Literal["auto"] = 1  # VMs at once for one run; "auto": from cores and memory
    resume_limit: int = 3  # fresh VMs after a crash or hang mid-run; 0: the run ends there


@dataclass(frozen=True)
class XfstestsSection:
    """One local.config section: the file system to test and how to make and mount it."""

    name: str = "xfs"
    fstyp: str = "xfs"
    mkfs_options: str = ""
    mount_options: str = ""
    extra: tuple[tuple[str, str], ...] = ()


XFSTESTS_DISK_SERIALS = {
    "test": "nixvmd-xfs-test",
    "scratch": "nixvmd-xfs-scratch",
    "results": "nixvmd-xfs-results",
}
# The mount tag of xfstests.dev_tree's share (virtiofs or 9p): the guest mounts it at xfstests.dir.
XFSTESTS_DEV_TREE_TAG = "nixvmd-fstests"


@dataclass(frozen=True)
class XfstestsConfig:
    """fstests in the guest: where it is, what to run, the sections, disks and hang limits."""

    dir: Path = Path("/var/lib/xfstests")
    args: tuple[str, ...] = ("-g", "quick")
    sections: tuple[XfstestsSection, ...] = (XfstestsSection(),)
    run_sections: tuple[str, ...] = ()
    test_size: int = 4 << 30
    scratch_size: int = 4 << 30
    results_size: int = 1 << 30
    test_dir: str = "/mnt/test"
    scratch_mnt: str = "/mnt/scratch"
    hang_multiple: float = 10.0
    hang_floor: float = 300.0
    hang_ceiling: float = 3600.0
    dev_tree: Path | None = None  # the user's fstests working tree, shared read-only at `dir`
    dev_tree_share: DevTreeShare = DevTreeShare.AUTO
    build: str = ""  # run by sh in dev_tree on the host before a run whose tree changed
    on_change: OnChange = OnChange.CHANGED

    def disks(self) -> tuple[DiskConfig, ...]:
        """The test, scratch and results disks nixvmd makes for fstests."""
        return tuple(self.disk(role) for role in XFSTESTS_DISK_SERIALS)

    def disk(self, role: str) -> DiskConfig:
        """fstests' `role` disk ("test", "scratch" or "results"): the one place its name is made."""
        sizes = {"test": self.test_size, "scratch": self.scratch_size, "results": self.results_size}
        return DiskConfig(f"xfstests-{role}", sizes[role], XFSTESTS_DISK_SERIALS[role])


@dataclass(frozen=True)
class NotifyConfig:
    on: tuple[NotifyEvent, ...] = (
        NotifyEvent.REGRESSION,
        NotifyEvent.FIRST_REGRESSION,
        NotifyEvent.FAIL,
        NotifyEvent.CRASH,
        NotifyEvent.TIMEOUT,
        NotifyEvent.BUILD_ERROR,
        NotifyEvent.FIXED,
    )
    command: str = ""


@dataclass(frozen=True)
class DistributeConfig:
    """Shards as Nix derivations (nixvmd.distribute): the engine, the builders, what a builder needs."""

    engine: Engine = Engine.LOCAL
    builders: str = ""  # Nix machine specs ("ssh://host x86_64-linux - 2 1 kvm"); "": nix.conf's
    system_features: tuple[str, ...] = ("kvm",)  # the derivation's requiredSystemFeatures
    build_here: bool = False  # this host builds shards too (Nix's own max-jobs), not only the builders
    qemu: str = ""  # a QEMU store path (its bin/qemu-system-x86_64); "": a bundle of vm.qemu
    guest_programs: tuple[str, ...] = ()  # more host programs for the sealed guest (beyond the suite's)


class DumpPolicy(enum.StrEnum):
    """When a run's guest memory is dumped into `runs/<id>/vmcore` ([debug] dump)."""

    CRASH = "crash"  # a panic or an oops, or the guest went down by itself
    NEVER = "never"
    ALWAYS_ON_TIMEOUT = "always-on-timeout"  # a crash, and a guest that hung past its limit


@dataclass(frozen=True)
class DumpLimit:
    """How many old vmcores are kept ([debug] keep_dumps): a count, or their total size in bytes."""

    count: int | None = 5
    size: int | None = None


@dataclass(frozen=True)
class DebugConfig:
    """What nixvmd keeps for debugging a kernel that broke: vmcores of crashed guests."""

    dump: DumpPolicy = DumpPolicy.CRASH
    keep_dumps: DumpLimit = DumpLimit()


@dataclass(frozen=True)
class BisectConfig:
    """nixvmctl bisect, and whether a new regression starts one by itself."""

    auto: bool = False


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path
    socket: Path
    settle: float = 0.05


@dataclass(frozen=True)
class Config:
    """A validated config; `source` is the file it came from (None: built-in defaults)."""

    kernel: KernelConfig
    image: ImageConfig
    vm: VMConfig
    suite: SuiteConfig
    notify: NotifyConfig
    daemon: DaemonConfig
    xfstests: XfstestsConfig = field(default_factory=XfstestsConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    bisect: BisectConfig = field(default_factory=BisectConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    source: Path | None = field(default=None, compare=False)

    @property
    def baseline_path(self) -> Path:
        """The known-failures file of the configured suite."""
        return self.suite.baseline or self.daemon.state_dir / "baseline" / str(self.suite.kind)

    @property
    def kernel_image(self) -> Path:
        """The absolute path of the watched kernel image."""
        return self.kernel.image if self.kernel.image.is_absolute() else self.kernel.tree / self.kernel.image
