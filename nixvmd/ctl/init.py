"""`nixvmctl init`: a commented nixvmd.toml for the kernel tree in the current directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.errors import NixvmdError

CONFIG_NAME = "nixvmd.toml"
DEFAULT_IMAGE = "arch/x86/boot/bzImage"


@dataclass(frozen=True)
class ImageGuess:
    """Where the tree's kernel image is (relative to the tree) and how sure we are."""

    path: str
    found: bool
    note: str


def is_kernel_tree(tree: Path) -> bool:
    """True for a Linux source or build tree (top-level Kbuild, or Makefile plus Kconfig)."""
    return (tree / "Kbuild").is_file() or ((tree / "Makefile").is_file() and (tree / "Kconfig").is_file())


def detect_image(tree: Path) -> ImageGuess:
    """The image nixvmd should watch: an x86 bzImage in the tree, then in an O= build
    directory one level down, then a bzImage or vmlinux at the top (a copy, another arch)."""
    if (tree / DEFAULT_IMAGE).is_file():
        return ImageGuess(DEFAULT_IMAGE, True, "found")
    for candidate in sorted(tree.glob(f"*/{DEFAULT_IMAGE}")):
        return ImageGuess(str(candidate.relative_to(tree)), True, "found in a build directory (make O=...)")
    if (tree / "bzImage").is_file():
        return ImageGuess("bzImage", True, "found")
    if (tree / "vmlinux").is_file():
        return ImageGuess(
            "vmlinux",
            True,
            "only vmlinux found; nixvmd boots x86 bzImages, so point this at one (make bzImage)",
        )
    return ImageGuess(DEFAULT_IMAGE, False, "not built yet; nixvmd starts a run once `make` writes it")


def config_text(image: ImageGuess) -> str:
    """The config file's text: the keys a first run needs, each with what it means."""
    return f"""\
# nixvmd configuration for this kernel tree, written by `nixvmctl init`.
# Every key and its default: config.example.toml in nixvmd's sources.
# Check it with `nixvmctl config check`; nixvmd rereads it whenever it changes.
# Relative paths are taken from this file's directory.

[kernel]
# The kernel build tree; its image is watched and every new one is tested.
tree = "."
# The image, relative to tree: {image.note}.
image = "{image.path}"
# Extra kernel parameters (nixvmd adds console=ttyS0 panic=-1).
cmdline = ""
# For a modular kernel, a lib/modules/<version> tree (make modules_install
# INSTALL_MOD_PATH=...); "" when virtio and the rest are built in.
modules_dir = ""

[image]
# "direct": QEMU boots the kernel with an initramfs nixvmd assembles (no image build).
# "nix": a NixOS VM from vm.nix (nix_file = "vm.nix") with this kernel injected.
backend = "direct"

[vm]
# "auto" uses KVM where it really boots guests, else TCG.
accel = "auto"
memory = "2G"
cpus = 2
boot_timeout = "120s"
# Scratch disks for the suite, e.g. [{{ name = "scratch", size = "4G" }}].
disks = []

[suite]
# "command" runs a shell command in the guest; exit status 0 is a pass.
# nixvmd-smoke is the built-in smoke check.
kind = "command"
command = "nixvmd-smoke"
timeout = "30m"

[notify]
# Desktop notifications for: regression, fail, crash, timeout, build-error, pass, fixed.
on = ["regression", "fail", "crash", "timeout", "build-error", "fixed"]
# A program run after each run with the run's JSON on stdin ("" = none).
command = ""

# [daemon]
# state_dir = "~/.local/state/nixvmd"
# socket = "$XDG_RUNTIME_DIR/nixvmd/control.sock"
"""


def write_config(tree: Path) -> tuple[Path, ImageGuess]:
    """Write `tree`/nixvmd.toml; NixvmdError when one exists already (it is never overwritten)."""
    target = tree / CONFIG_NAME
    image = detect_image(tree)
    text = config_text(image)
    parse_config(text, name=str(target), base=tree)  # a bug here must not reach the user's tree
    try:
        with target.open("x") as f:
            f.write(text)
    except FileExistsError:
        raise NixvmdError(f"{target} exists already; edit it, or remove it to start afresh") from None
    return target, image
