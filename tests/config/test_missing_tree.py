"""A kernel tree that does not exist: `config check` refuses it, the daemon names it and waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import load_config
from nixvmd.ctl.main import main
from nixvmd.errors import ConfigError, KernelImageError
from nixvmd.watch.kernel_image import read_kernel_image


def test_config_check_refuses_a_tree_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nixvmd.toml"
    path.write_text('[vm]\ncpus = 1\n\n[kernel]\ntree = "/does/not/exist"\n')

    assert main(["config", "check", str(path)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{path}:5: kernel.tree: /does/not/exist does not exist; "
        "create it or point kernel.tree at your kernel tree\n"
    )


def test_config_check_refuses_a_tree_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nixvmd.toml"
    path.write_text('[kernel]\ntree = "nixvmd.toml"\n')

    assert main(["config", "check", str(path)]) == 2

    assert f"{path}:2: kernel.tree: {path} is not a directory;" in capsys.readouterr().err


def test_config_check_accepts_a_tree_that_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "linux").mkdir()
    path = tmp_path / "nixvmd.toml"
    path.write_text('[kernel]\ntree = "linux"\n')

    assert main(["config", "check", str(path)]) == 0

    assert capsys.readouterr().out == f"{path}: ok\n"


def test_the_daemon_loads_a_config_whose_tree_is_still_missing(tmp_path: Path) -> None:
    path = tmp_path / "nixvmd.toml"
    path.write_text('[kernel]\ntree = "linux"\n')

    assert load_config(path).kernel.tree == tmp_path / "linux"
    with pytest.raises(ConfigError, match=r"kernel\.tree: .* does not exist"):
        load_config(path, on_disk=True)


def test_a_missing_tree_is_named_instead_of_a_missing_image(tmp_path: Path) -> None:
    tree = tmp_path / "linux"

    with pytest.raises(KernelImageError) as info:
        read_kernel_image(tree / "arch/x86/boot/bzImage", tree=tree)

    assert str(info.value) == f"the kernel tree {tree} does not exist (yet); create it or fix kernel.tree"


def test_a_tree_without_its_image_still_says_build_one(tmp_path: Path) -> None:
    image = tmp_path / "arch/x86/boot/bzImage"

    with pytest.raises(KernelImageError, match="no kernel image there yet; build one"):
        read_kernel_image(image, tree=tmp_path)
