"""`nixvmctl init`: a commented nixvmd.toml (and, with --nix, a vm.nix) for the kernel tree here."""

from __future__ import annotations

import contextlib
import importlib.resources
import textwrap
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.ctl.kconfig import KernelOptions, read_kernel_options
from nixvmd.errors import NixvmdError
from nixvmd.image.nix import nix_expression_for_path
from nixvmd.vm.ssh import ssh_keys

CONFIG_NAME = "nixvmd.toml"
VM_NIX_NAME = "vm.nix"
DEFAULT_IMAGE = "arch/x86/boot/bzImage"
# The line of the shipped vm.nix that imports guest.nix from next to itself.
GUEST_IMPORT = "  nixvmdGuest = ./guest.nix;\n"
# The line that names nixvmd's ssh client key (none in the shipped file).
SSH_KEY_LINE = "  nixvmdSshKey = null;\n"
# Where the config's hint installs a modular kernel's modules: a dot directory, which the
# kernel's .gitignore already ignores.
MODULES_HINT_DIR = ".nixvmd-modules"
# KUnit runs before the agent is up, so vm.boot_timeout bounds the tests as well as the boot.
KUNIT_BOOT_TIMEOUT = "10m"


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


def tree_options(tree: Path, image: ImageGuess) -> KernelOptions | None:
    """The .config of the build that makes `image` (an O= directory's, else the tree's)."""
    build_dirs = [tree]
    if image.found and image.path.endswith(DEFAULT_IMAGE) and image.path != DEFAULT_IMAGE:
        build_dirs.insert(0, tree / image.path.removesuffix(DEFAULT_IMAGE))
    return read_kernel_options(build_dirs)


def notes(options: KernelOptions) -> list[str]:
    """What the .config decided in the written config, one sentence each."""
    out = []
    if options.kunit:
        out.append(f'{options.kunit_tests} KUnit test options are built in, so the suite is kind = "kunit".')
    elif options.kunit_test_modules:
        out.append(
            f"the {options.kunit_test_modules} KUnit test options are modules, which do not run at boot; "
            'build them in (=y) to test them with kind = "kunit".'
        )
    if options.modules:
        out.append(f"{options.modules} options are modules: see modules_dir below.")
    if options.virtio_console == "m":
        out.append(
            "the virtio console is a module: nixvmd's agent uses it once modules_dir is set, "
            "else the serial console."
        )
    elif not options.virtio_console:
        out.append(
            "no virtio console (CONFIG_VIRTIO_CONSOLE), so nixvmd drives the guest over the "
            "serial console alone; CONFIG_VIRTIO_CONSOLE=y gives its agent a channel of its own."
        )
    return out


def _comment(text: str, first: str = "# ", rest: str = "# ") -> str:
    return "\n".join(textwrap.wrap(text, 88, initial_indent=first, subsequent_indent=rest)) + "\n"


def _header(options: KernelOptions | None) -> str:
    found = notes(options) if options is not None else []
    if options is None or not found:
        return ""
    return f"#\n# From {options.path}:\n" + "".join(_comment(note, "# - ", "#   ") for note in found)


def _cmdline(options: KernelOptions | None) -> str:
    if options is None or not options.kunit or not options.kunit_off_by_default:
        return """# Extra kernel parameters (nixvmd adds console=ttyS0 panic=-1).
cmdline = ""
"""
    return """# Extra kernel parameters (nixvmd adds console=ttyS0 panic=-1). kunit.enable=1 because
# this .config leaves KUnit off unless asked (CONFIG_KUNIT_DEFAULT_ENABLED is not set).
cmdline = "kunit.enable=1"
"""


def _modules_dir(tree: Path, options: KernelOptions | None) -> str:
    if options is None or not options.modules:
        return """# For a modular kernel, a lib/modules/<version> tree (make modules_install
# INSTALL_MOD_PATH=...); "" when virtio and the rest are built in.
modules_dir = ""
"""
    *others, last = options.guest_modules or ("",)
    named = f"{', '.join(others)} and {last}" if others else last
    among = f", among them {named}, which nixvmd's guest loads" if named else ""
    return (
        _comment(f"This .config builds {options.modules} options as modules{among}. After each build run")
        + f"#   make modules_install INSTALL_MOD_PATH={tree / MODULES_HINT_DIR}\n"
        + f'# and set modules_dir = "{MODULES_HINT_DIR}" (a lib/modules/<version> tree; "" = none).\n'
        + 'modules_dir = ""\n'
    )


def _boot_timeout(options: KernelOptions | None) -> str:
    if options is None or not options.kunit:
        return 'boot_timeout = "120s"\n'
    return f'''# KUnit runs during boot, before nixvmd's agent is up: this bounds the tests too.
boot_timeout = "{KUNIT_BOOT_TIMEOUT}"
'''


def _suite(options: KernelOptions | None) -> str:
    if options is None or not options.kunit:
        return """# "command" runs a shell command in the guest; exit status 0 is a pass.
# nixvmd-smoke is the built-in smoke check.
kind = "command"
command = "nixvmd-smoke"
"""
    return """# "kunit": the kernel runs its built-in KUnit tests at boot and nixvmd reads their KTAP
# from the console, one test per case. "command" runs a shell command in the guest
# instead (command = "..."); exit status 0 is a pass.
kind = "kunit"
"""


def image_section(nix: bool) -> str:
    """The [image] keys: the direct backend, or the nix backend building vm.nix next to the config."""
    if nix:
        return f"""\
# "nix": the NixOS VM of vm.nix, built with nix-build '<nixpkgs/nixos>' -A vm; nixvmd
# rebuilds it only when vm.nix or a file it pulls in changes, and boots your kernel in it
# without Nix. The kernel needs virtio, 9p, ext4, overlayfs... built in: docs/nix-backend.md.
backend = "nix"
nix_file = "{VM_NIX_NAME}"
"""
    return """\
# "direct": QEMU boots the kernel with an initramfs nixvmd assembles (no image build).
# "nix": a NixOS VM from vm.nix (nix_file = "vm.nix") with this kernel injected.
backend = "direct"
"""


def config_text(
    image: ImageGuess, nix: bool = False, options: KernelOptions | None = None, tree: Path = Path(".")
) -> str:
    """The config file's text: the keys a first run needs, each with what it means, and
    what the tree's .config (`options`) says about KUnit, modules and the virtio console."""
    return f"""\
# nixvmd configuration for this kernel tree, written by `nixvmctl init`.
# Every key and its default: config.example.toml in nixvmd's sources.
# Check it with `nixvmctl config check`; nixvmd rereads it whenever it changes.
# Relative paths are taken from this file's directory.
{_header(options)}
[kernel]
# The kernel build tree; its image is watched and every new one is tested.
tree = "."
# The image, relative to tree: {image.note}.
image = "{image.path}"
{_cmdline(options)}{_modules_dir(tree, options)}
[image]
{image_section(nix)}
[vm]
# "auto" uses KVM where it really boots guests, else TCG.
accel = "auto"
memory = "2G"
cpus = 2
{_boot_timeout(options)}# Scratch disks for the suite, e.g. [{{ name = "scratch", size = "4G" }}].
disks = []
# "user": the guest on QEMU's user-mode network, with ssh from here (nixvmctl ssh).
network = "none"

[suite]
{_suite(options)}timeout = "30m"

[notify]
# Desktop notifications for: regression, first-regression (during the run), fail, crash,
# timeout, build-error, pass, fixed.
on = ["regression", "first-regression", "fail", "crash", "timeout", "build-error", "fixed"]
# A program run after each run with the run's JSON on stdin ("" = none).
command = ""

# [daemon]
# state_dir = "~/.local/state/nixvmd"
# socket = "$XDG_RUNTIME_DIR/nixvmd/control.sock"
"""


def installed_guest_nix() -> Path:
    """The guest module of this nixvmd installation (nixvmd/nix/guest.nix), as a file path."""
    guest = importlib.resources.files("nixvmd") / "nix" / "guest.nix"
    if not isinstance(guest, Path) or not guest.is_file():
        raise NixvmdError(
            f"nixvmd's guest.nix is not a plain file ({guest}); install nixvmd from a directory "
            "or wheel, not a zip, so vm.nix can import it"
        )
    return guest.resolve()


def vm_nix_text(guest: Path, ssh_key: Path | None = None) -> str:
    """The shipped vm.nix with its guest module import pointing at `guest` (an absolute path),
    and root's authorized ssh key at `ssh_key` (nixvmd's client key, absolute) when given."""
    shipped = (importlib.resources.files("nixvmd") / "nix" / "vm.nix").read_text()
    for line in (GUEST_IMPORT, SSH_KEY_LINE):
        if shipped.count(line) != 1:
            raise AssertionError(f"the shipped vm.nix has no single line {line.strip()!r}")
    text = shipped.replace(GUEST_IMPORT, f"  nixvmdGuest = {nix_expression_for_path(guest)};\n")
    if ssh_key is not None:
        text = text.replace(SSH_KEY_LINE, f"  nixvmdSshKey = {nix_expression_for_path(ssh_key)};\n")
    return text


def _create(target: Path, text: str) -> None:
    try:
        with target.open("x") as f:
            f.write(text)
    except FileExistsError:
        raise NixvmdError(f"{target} exists already; edit it, or remove it to start afresh") from None


def write_config(tree: Path, nix: bool = False) -> tuple[Path, ImageGuess]:
    """Write `tree`/nixvmd.toml, and with `nix` `tree`/vm.nix importing this nixvmd's guest.nix.

    NixvmdError when either exists already: nothing is overwritten, and nothing is written
    unless everything can be.
    """
    target = tree / CONFIG_NAME
    vm_nix = tree / VM_NIX_NAME
    image = detect_image(tree)
    text = config_text(image, nix, tree_options(tree, image), tree)
    config = parse_config(text, name=str(target), base=tree)  # a bug here must not reach the user's tree
    if not nix:
        _create(target, text)
        return target, image
    for existing in (target, vm_nix):
        if existing.exists():
            raise NixvmdError(f"{existing} exists already; edit it, or remove it to start afresh")
    keys = ssh_keys(config.daemon.state_dir)  # made now: vm.nix names the public key
    _create(vm_nix, vm_nix_text(installed_guest_nix(), keys.client_public))
    try:
        _create(target, text)
    except NixvmdError:
        with contextlib.suppress(OSError):
            vm_nix.unlink()
        raise
    return target, image
