"""Every config key, declared once: its table, name, converter, default, doc and what a change means.

load.py reads a file with these declarations (known keys, defaults, conversion, relative
paths), plan/planner.py classifies a reload with them, and tests hold config.example.toml and
the dataclasses' own defaults (schema.py) to them. Add a key here and a field to its dataclass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from nixvmd.config import values as check
from nixvmd.config.declaration import Base, ChangeKind, Derived, Row, Setting, Table
from nixvmd.config.extensions import name_of
from nixvmd.config.schema import (
    Accel,
    Backend,
    BisectConfig,
    Config,
    DaemonConfig,
    DebugConfig,
    DevTreeShare,
    DiskConfig,
    DiskFormat,
    DistributeConfig,
    DumpPolicy,
    Engine,
    ImageConfig,
    KernelConfig,
    Network,
    NotifyConfig,
    OnChange,
    SuiteConfig,
    SuiteKind,
    VMConfig,
    XfstestsConfig,
    XfstestsSection,
)
from nixvmd.config.units import parse_size

CONFIG_DIR, KERNEL_TREE = Base.CONFIG_DIR, Base.KERNEL_TREE


def _state_dir(_: Row) -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "nixvmd"


def _disk_size(row: Row) -> int:
    # A path disk is the user's, attached at its own size: nixvmd makes no image for it.
    return 0 if row.values.get("path") is not None else parse_size("1G")


def _socket(_: Row) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/nixvmd-{os.getuid()}"
    return Path(runtime) / "nixvmd" / "control.sock"


KERNEL = Table(
    "kernel",
    KernelConfig,
    (
        Setting(
            "tree", check.expanded_path, ".", "The build tree; default: this file's dir.", base=CONFIG_DIR
        ),
        Setting(
            "image",
            check.expanded_path,
            "arch/x86/boot/bzImage",
            "The watched kernel image.",
            base=KERNEL_TREE,
        ),
        Setting("cmdline", check.string, "", "Extra kernel parameters."),
        Setting(
            "modules",
            check.paths,
            [],
            ".ko files to load in the guest, in this order.",
            change=ChangeKind.IMAGE,
            base=KERNEL_TREE,
        ),
        Setting(
            "modules_dir",
            check.optional_path,
            "",
            'A lib/modules/<version> tree for a modular kernel; "" = none.',
            change=ChangeKind.IMAGE,
            base=KERNEL_TREE,
        ),
        Setting(
            "build",
            check.string,
            'make -j"$(nproc)" bzImage',
            "bisect: the shell command that builds the kernel, run in the tree.",
            change=ChangeKind.REPORT,
        ),
    ),
    change=ChangeKind.RUNTIME,
)

IMAGE = Table(
    "image",
    ImageConfig,
    (
        Setting(
            "backend",
            name_of(Backend, "image.backend"),
            "direct",
            '"direct" (an initramfs) or "nix" (NixOS).',
        ),
        Setting("nix_file", check.expanded_path, "vm.nix", "nix: the NixOS configuration.", base=CONFIG_DIR),
        Setting("flake", check.string, "", "nix: a flake reference to build instead."),
        Setting("nix_args", check.strings, [], "Extra arguments for nix-build / nix build."),
        Setting("inputs", check.expanded_paths, [], "More paths the image depends on.", base=CONFIG_DIR),
        Setting(
            "busybox", check.expanded_path, "/bin/busybox", "direct: the static busybox.", base=CONFIG_DIR
        ),
        Setting("share_host_root", check.boolean, False, "direct: the host's / read-only in the guest."),
    ),
    change=ChangeKind.IMAGE,
)

DISKS = Table(
    "vm.disks",
    DiskConfig,
    (
        Setting(
            "name",
            check.identifier,
            Derived(lambda row: f"disk{row.index}", '"disk<N>", N its place in the list'),
            "The disk's name; its image is state_dir/disks/<name>.img.",
        ),
        Setting(
            "path",
            check.optional_path,
            "",
            'An image file or host block device to attach as it is, instead of a size; "" = none.',
            base=CONFIG_DIR,
        ),
        Setting(
            "size",
            parse_size,
            Derived(_disk_size, '"1G" (0 with a path)'),
            "The sparse image's size; a new size recreates it.",
        ),
        Setting(
            "serial",
            check.serial,
            Derived(lambda row: f"nixvmd-{row.values['name']}"[:20], '"nixvmd-<name>", cut to 20'),
            "The virtio serial the guest finds the disk by.",
        ),
        Setting("readonly", check.boolean, False, "Attach it read-only: the guest cannot write to it."),
        Setting(
            "format",
            check.optional_enum_of(DiskFormat),
            "",
            'A path disk\'s format, "raw" or "qcow2"; "" = a device raw, a file as QEMU probes it.',
        ),
    ),
    example="{name = 'test', size = '1G'}",
    noun="disk",
    unique=("name", "serial"),
)

VM = Table(
    "vm",
    VMConfig,
    (
        Setting(
            "accel", check.enum_of(Accel), "auto", '"auto" (KVM where it works, else TCG), "kvm", "tcg".'
        ),
        Setting("memory", check.memory, "2G", "The guest's memory."),
        Setting("cpus", check.positive_int, 2, "The guest's CPUs."),
        Setting("qemu", check.string, "qemu-system-x86_64", "The QEMU binary."),
        Setting("qemu_options", check.strings, [], "Extra QEMU arguments, appended last."),
        Setting("boot_timeout", check.duration, "120s", "From QEMU start to the agent's ready."),
        Setting("disks", DISKS, [], "Guest disks by serial: sparse images made per run, or your paths."),
        Setting("usb", check.usb_ids, [], 'Host USB devices to pass through, as "vendor:product" ids.'),
        Setting("network", check.enum_of(Network), "none", '"none", or "user" (ssh forwarded).'),
    ),
    change=ChangeKind.RUNTIME,
)

SUITE = Table(
    "suite",
    SuiteConfig,
    (
        Setting(
            "kind",
            name_of(SuiteKind, "suite.kind"),
            "command",
            '"command", "kunit", "kselftest", "xfstests".',
        ),
        Setting("command", check.string, "uname -r", "command, kselftest: run in the guest by /bin/sh."),
        Setting("timeout", check.duration, "30m", "The suite's time limit, from agent ready to its exit."),
        Setting(
            "baseline", check.optional_path, "", 'The known failures; "" = state_dir\'s.', base=CONFIG_DIR
        ),
        Setting("rerun_failed", check.count, 0, "Reruns of new failures, to tell flaky ones."),
        Setting("shards", check.shards, 1, 'VMs at once for one run, or "auto" (cores, memory).'),
        Setting("resume_limit", check.count, 3, "Fresh VMs after a crash mid-run; 0 = end the run."),
    ),
    change=ChangeKind.RUNTIME,
)

NOTIFY = Table(
    "notify",
    NotifyConfig,
    (
        Setting(
            "on",
            check.notify_events,
            ["regression", "first-regression", "fail", "crash", "timeout", "build-error", "fixed"],
            "What about a run makes a desktop notification.",
        ),
        Setting("command", check.string, "", 'A program given each run\'s JSON on stdin; "" = none.'),
    ),
    change=ChangeKind.REPORT,
)

DAEMON = Table(
    "daemon",
    DaemonConfig,
    (
        Setting(
            "state_dir",
            check.expanded_path,
            Derived(_state_dir, "$XDG_STATE_HOME/nixvmd"),
            "Runs, disks, cached initramfs and kernel snapshots.",
            base=CONFIG_DIR,
        ),
        Setting(
            "socket",
            check.expanded_path,
            Derived(_socket, "$XDG_RUNTIME_DIR/nixvmd/control.sock"),
            "The control socket nixvmctl talks to.",
            base=CONFIG_DIR,
        ),
        Setting("settle", check.duration, "50ms", "How long a burst of file events is coalesced."),
    ),
    change=ChangeKind.RESTART,
)

XFSTESTS_SECTIONS = Table(
    "xfstests.sections",
    XfstestsSection,
    (
        Setting(
            "name",
            check.identifier,
            Derived(lambda row: "xfs" if row.index == 0 else f"s{row.index}", '"xfs", later ones "s<N>"'),
            "The local.config section's name (check -s NAME).",
        ),
        Setting("fstyp", check.fstyp, "xfs", "The file system under test (mkfs.<fstyp>)."),
        Setting("mkfs_options", check.config_value, "", "MKFS_OPTIONS for the section."),
        Setting("mount_options", check.config_value, "", "MOUNT_OPTIONS for the section."),
        Setting("extra", check.config_pairs, {}, "Further KEY = 'value' lines for the section."),
    ),
    example="{ name = 'ext4', fstyp = 'ext4' }",
    noun="section",
    unique=("name",),
    required=True,
)

XFSTESTS = Table(
    "xfstests",
    XfstestsConfig,
    (
        Setting("dir", check.guest_path, "/var/lib/xfstests", "Where fstests is installed in the guest."),
        Setting("args", check.strings, ["-g", "quick"], "check's arguments after nixvmd's own."),
        Setting("sections", XFSTESTS_SECTIONS, [{}], "The local.config sections, one table each."),
        Setting("run_sections", check.strings, [], "The sections to run (check -s NAME each); [] = all."),
        Setting("test_size", check.disk_size, "4G", "The test device's sparse image."),
        Setting("scratch_size", check.disk_size, "4G", "The scratch device's sparse image."),
        Setting("results_size", check.disk_size, "1G", "The disk that carries RESULT_BASE back."),
        Setting("test_dir", check.guest_dir, "/mnt/test", "TEST_DIR, the test device's mount point."),
        Setting("scratch_mnt", check.guest_dir, "/mnt/scratch", "SCRATCH_MNT, the scratch mount point."),
        Setting("hang_multiple", check.multiple, 10, "A test past this many times its last time hangs."),
        Setting("hang_floor", check.duration, "5m", "No test hangs before this long."),
        Setting("hang_ceiling", check.duration, "60m", "Every test hangs after this long (a new one too)."),
        Setting(
            "dev_tree",
            check.optional_path,
            "",
            'Your fstests working tree, shared read-only into the guest at `dir`; "" = none.',
            base=CONFIG_DIR,
        ),
        Setting(
            "dev_tree_share",
            check.enum_of(DevTreeShare),
            "auto",
            '"virtiofs" or "9p" for dev_tree; "auto": what the kernel has.',
        ),
        Setting("build", check.string, "", 'Run in dev_tree before a run if the tree changed; "" = none.'),
        Setting(
            "on_change",
            check.enum_of(OnChange),
            "changed",
            'A change in the tree on the host runs "changed" tests, "all", or "off".',
            change=ChangeKind.WATCH,
        ),
    ),
    change=ChangeKind.RUNTIME,
)

DISTRIBUTE = Table(
    "distribute",
    DistributeConfig,
    (
        Setting("engine", check.enum_of(Engine), "local", '"local" (VMs here) or "nix" (derivations).'),
        Setting("builders", check.string, "", 'Nix machine specs for the shards; "" = nix.conf\'s.'),
        Setting("system_features", check.strings, ["kvm"], "The derivations' requiredSystemFeatures."),
        Setting("build_here", check.boolean, False, "This host builds shards too, not only the builders."),
        Setting("qemu", check.string, "", 'A QEMU store path; "" = a store bundle of vm.qemu.'),
        Setting("guest_programs", check.strings, [], "More host programs for the shards' guest."),
    ),
    change=ChangeKind.RUNTIME,
)

BISECT = Table(
    "bisect",
    BisectConfig,
    (Setting("auto", check.boolean, False, "A new regression starts a bisect from a known-good commit."),),
    change=ChangeKind.REPORT,
)

DEBUG = Table(
    "debug",
    DebugConfig,
    (
        Setting(
            "dump",
            check.enum_of(DumpPolicy),
            "crash",
            'vmcore of a crashed guest: "crash", "never" or "always-on-timeout".',
        ),
        Setting("keep_dumps", check.dump_limit, 5, 'Old vmcores kept: a count (5) or a total size ("8G").'),
    ),
    change=ChangeKind.REPORT,
)

SECTIONS: tuple[Table, ...] = (KERNEL, IMAGE, VM, SUITE, NOTIFY, DAEMON, XFSTESTS, DISTRIBUTE, BISECT, DEBUG)
"""The [sections] of a config file, in the order they are read and documented."""


def section_settings() -> Iterator[tuple[Table, Setting]]:
    """Every section-level key with its table ([[rows]] keys count as their table key)."""
    for table in SECTIONS:
        for setting in table.settings:
            yield table, setting


def changed_settings(old: Config, new: Config) -> dict[str, ChangeKind]:
    """The keys whose values differ between two configs ("vm.memory"), each with its change kind."""
    return {
        f"{table.path}.{setting.name}": table.change_of(setting)
        for table, setting in section_settings()
        if getattr(getattr(old, table.path), setting.name) != getattr(getattr(new, table.path), setting.name)
    }
