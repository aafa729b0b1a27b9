"""`nixvmctl init` reads the tree's .config: KUnit, modules and the virtio console decide the config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nixvmd.config.load import load_config
from nixvmd.config.schema import SuiteKind
from nixvmd.ctl import init
from nixvmd.ctl.kconfig import is_kunit_test, parse_kconfig
from nixvmd.ctl.main import main
from tests.conftest import KERNEL_CACHE

# Lines as a tinyconfig + KUnit build writes them (the kunit-tiny kernel of the test setup).
KUNIT_CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_MODULES_USE_ELF_RELA=y
# CONFIG_MODULES is not set
CONFIG_VIRTIO_CONSOLE=y
CONFIG_KUNIT=y
# CONFIG_KUNIT_DEBUGFS is not set
CONFIG_KUNIT_TEST=y
CONFIG_KUNIT_EXAMPLE_TEST=y
CONFIG_KUNIT_ALL_TESTS=y
CONFIG_KUNIT_DEFAULT_ENABLED=y
CONFIG_LIST_KUNIT_TEST=y
"""

# Lines as a distribution kernel's .config has them: modular, KUnit off, virtio as modules.
MODULAR_CONFIG = """\
CONFIG_MODULES=y
CONFIG_VIRTIO_PCI=m
CONFIG_VIRTIO_BLK=m
CONFIG_VIRTIO_CONSOLE=m
CONFIG_XFS_FS=m
CONFIG_EXT4_FS=y
CONFIG_LOCALVERSION="-cloud"
# CONFIG_KUNIT is not set
"""


def kernel_tree(root: Path, dot_config: str | None, build_dir: str = "") -> Path:
    """A kernel source tree with a built bzImage (in `build_dir`, for make O=) and a .config."""
    (root / "Kbuild").parent.mkdir(parents=True, exist_ok=True)
    (root / "Kbuild").write_text("")
    out = root / build_dir
    (out / "arch/x86/boot").mkdir(parents=True)
    (out / "arch/x86/boot/bzImage").write_bytes(b"")
    if dot_config is not None:
        (out / ".config").write_text(dot_config)
    return root


def prose(config_text: str) -> str:
    """The comments of a config as one line of text, so assertions do not depend on wrapping."""
    lines = [line.removeprefix("#").strip() for line in config_text.splitlines() if line.startswith("#")]
    return " ".join(lines)


def test_a_kunit_config_makes_a_kunit_suite_that_loads(tmp_path: Path) -> None:
    tree = kernel_tree(tmp_path / "linux", KUNIT_CONFIG)

    target, _ = init.write_config(tree)

    config = load_config(target)
    assert config.suite.kind is SuiteKind.KUNIT
    # KUnit runs before the agent is up, so the boot limit has to cover the tests.
    assert config.vm.boot_timeout >= 600
    assert config.kernel.cmdline == ""
    text = target.read_text()
    assert f"# From {tree / '.config'}:" in text
    assert "no virtio console" not in text


@pytest.mark.skipif(
    not (KERNEL_CACHE / "kunit-tiny/src/.config").is_file(), reason="no kunit-tiny tree (setup step)"
)
def test_the_real_kunit_kernels_config_makes_a_kunit_suite(tmp_path: Path) -> None:
    tree = kernel_tree(tmp_path / "linux", None)
    shutil.copy(KERNEL_CACHE / "kunit-tiny/src/.config", tree / ".config")

    target, _ = init.write_config(tree)

    assert load_config(target).suite.kind is SuiteKind.KUNIT


def test_kunit_off_by_default_gets_kunit_enable_on_the_command_line(tmp_path: Path) -> None:
    dot_config = KUNIT_CONFIG.replace(
        "CONFIG_KUNIT_DEFAULT_ENABLED=y", "# CONFIG_KUNIT_DEFAULT_ENABLED is not set"
    )
    target, _ = init.write_config(kernel_tree(tmp_path / "linux", dot_config))

    config = load_config(target)
    assert config.suite.kind is SuiteKind.KUNIT
    assert config.kernel.cmdline == "kunit.enable=1"


def test_kunit_tests_as_modules_keep_the_command_suite_and_say_why(tmp_path: Path) -> None:
    dot_config = MODULAR_CONFIG.replace(
        "# CONFIG_KUNIT is not set", "CONFIG_KUNIT=y\nCONFIG_LIST_KUNIT_TEST=m"
    )
    target, _ = init.write_config(kernel_tree(tmp_path / "linux", dot_config))

    assert load_config(target).suite.kind is SuiteKind.COMMAND
    assert "KUnit test options are modules, which do not run at boot" in prose(target.read_text())


def test_a_modular_config_gets_a_modules_dir_hint(tmp_path: Path) -> None:
    tree = kernel_tree(tmp_path / "linux", MODULAR_CONFIG)

    target, _ = init.write_config(tree)

    config = load_config(target)
    assert config.suite.kind is SuiteKind.COMMAND
    assert config.kernel.modules_dir is None, "a hint only: the modules are not installed yet"
    text = prose(target.read_text())
    assert f"make modules_install INSTALL_MOD_PATH={tree / '.nixvmd-modules'}" in text
    assert 'set modules_dir = ".nixvmd-modules"' in text
    assert "virtio_pci, virtio_blk and virtio_console, which nixvmd's guest loads" in text
    assert "the virtio console is a module" in text


def test_no_virtio_console_gets_a_note(tmp_path: Path) -> None:
    dot_config = KUNIT_CONFIG.replace("CONFIG_VIRTIO_CONSOLE=y", "# CONFIG_VIRTIO_CONSOLE is not set")

    target, _ = init.write_config(kernel_tree(tmp_path / "linux", dot_config))

    assert "no virtio console (CONFIG_VIRTIO_CONSOLE), so nixvmd drives the guest over the serial" in prose(
        target.read_text()
    )


def test_the_config_of_an_o_build_directory_is_read(tmp_path: Path) -> None:
    tree = kernel_tree(tmp_path / "linux", KUNIT_CONFIG, build_dir="build")

    target, image = init.write_config(tree)

    assert image.path == "build/arch/x86/boot/bzImage"
    assert load_config(target).suite.kind is SuiteKind.KUNIT


def test_without_a_config_the_file_is_the_plain_one(tmp_path: Path) -> None:
    target, image = init.write_config(kernel_tree(tmp_path / "linux", None))

    assert target.read_text() == init.config_text(image)
    assert load_config(target).suite.kind is SuiteKind.COMMAND


def test_init_tells_what_it_took_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = kernel_tree(tmp_path / "linux", KUNIT_CONFIG)
    monkeypatch.chdir(tree)

    assert main(["init"]) == 0

    out = capsys.readouterr().out
    assert (
        f'from {tree / ".config"}: 4 KUnit test options are built in, so the suite is kind = "kunit".' in out
    )


def test_kunit_test_options_by_the_kernels_naming() -> None:
    tests = ["KUNIT_TEST", "EXT4_KUNIT_TESTS", "BITFIELD_KUNIT", "KUNIT_ALL_TESTS", "LIST_KUNIT_TEST"]
    switches = ["KUNIT", "KUNIT_DEBUGFS", "KUNIT_DEFAULT_ENABLED", "MODULES"]
    assert all(is_kunit_test(name) for name in tests)
    assert not any(is_kunit_test(name) for name in switches)


def test_parse_kconfig_reads_set_unset_and_strings() -> None:
    values = parse_kconfig(MODULAR_CONFIG)
    assert values["VIRTIO_PCI"] == "m"
    assert values["EXT4_FS"] == "y"
    assert values["LOCALVERSION"] == "-cloud"
    assert values["KUNIT"] == "n"
