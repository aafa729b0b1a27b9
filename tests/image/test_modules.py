"""Kernel modules for the guest: finding the tree, reading dependencies, load order."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import default_kernel_cache
from nixvmd.errors import ImageBuildError
from nixvmd.image.modules import module_name, read_depends, resolve_modules_dir, select_modules

RELEASE = "6.1.0-test"
DEBIAN_MODULES = default_kernel_cache() / "debian-cloud" / "modules"


def fake_ko(depends: str | None, name: str) -> bytes:
    """Bytes shaped like a module: ELF magic, then .modinfo's NUL-separated key=value strings."""
    modinfo = [b"license=GPL", f"name={name}".encode(), b"vermagic=6.1.0-test SMP mod_unload"]
    if depends is not None:
        modinfo.insert(1, f"depends={depends}".encode())
    return b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"\0".join(modinfo) + b"\0" + b"\xff" * 32


@pytest.fixture
def modules_tree(tmp_path: Path) -> Path:
    """lib/modules/<release> with a small dependency graph, one built-in and one broken module.

    virtio_ring <- virtio <- virtio_pci (also needs virtio_pci_legacy_dev, built in);
    virtio_blk needs virtio and virtio_ring; my-driver (my_driver) needs virtio_blk;
    broken needs ghost, which exists nowhere.
    """
    root = tmp_path / "lib/modules" / RELEASE
    virtio = root / "kernel/drivers/virtio"
    virtio.mkdir(parents=True)
    (root / "kernel/drivers/block").mkdir()
    (root / "extra").mkdir()
    (virtio / "virtio_ring.ko").write_bytes(fake_ko("", "virtio_ring"))
    (virtio / "virtio.ko").write_bytes(fake_ko("virtio_ring", "virtio"))
    (virtio / "virtio_pci.ko").write_bytes(fake_ko("virtio_pci_legacy_dev,virtio,virtio_ring", "virtio_pci"))
    (root / "kernel/drivers/block/virtio_blk.ko").write_bytes(fake_ko("virtio,virtio_ring", "virtio_blk"))
    (root / "extra/my-driver.ko").write_bytes(fake_ko("virtio_blk", "my_driver"))
    (root / "extra/broken.ko").write_bytes(fake_ko("ghost", "broken"))
    (root / "extra/nodeps.ko").write_bytes(fake_ko(None, "nodeps"))
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci_legacy_dev.ko\n")
    (root / "modules.order").write_text("")
    return root


@pytest.fixture
def debian_modules() -> Path:
    """The Debian cloud kernel's modules (the setup step unpacks them); missing is a setup error."""
    releases = sorted(DEBIAN_MODULES.glob("*/modules.dep")) if DEBIAN_MODULES.is_dir() else []
    if not releases:
        pytest.fail(f"no Debian kernel modules in {DEBIAN_MODULES}: run scripts/fetch-debian-kernel.sh first")
    return releases[0].parent


def names(paths: tuple[Path, ...]) -> list[str]:
    return [module_name(p) for p in paths]


def test_the_release_directory_itself_is_accepted(modules_tree: Path) -> None:
    assert resolve_modules_dir(modules_tree, RELEASE) == modules_tree


def test_a_directory_holding_the_release_is_accepted(modules_tree: Path) -> None:
    assert resolve_modules_dir(modules_tree.parent, RELEASE) == modules_tree


def test_an_install_prefix_is_accepted(modules_tree: Path, tmp_path: Path) -> None:
    assert resolve_modules_dir(tmp_path, RELEASE) == modules_tree


def test_modules_of_another_release_are_refused(modules_tree: Path) -> None:
    with pytest.raises(ImageBuildError) as info:
        resolve_modules_dir(modules_tree.parent, "6.2.0-other")

    assert f"kernel.modules_dir {modules_tree.parent} holds no modules for kernel 6.2.0-other" in str(
        info.value
    )


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="holds no modules"):
        resolve_modules_dir(tmp_path, RELEASE)


def test_the_debian_modules_dir_resolves_from_its_parent(debian_modules: Path) -> None:
    assert resolve_modules_dir(debian_modules.parent, debian_modules.name) == debian_modules


def test_module_names_use_underscores() -> None:
    assert module_name("extra/my-driver.ko") == "my_driver"
    assert module_name("virtio_pci") == "virtio_pci"


def test_depends_are_read_from_modinfo(modules_tree: Path) -> None:
    assert read_depends(modules_tree / "kernel/drivers/virtio/virtio_pci.ko") == [
        "virtio_pci_legacy_dev",
        "virtio",
        "virtio_ring",
    ]
    assert read_depends(modules_tree / "kernel/drivers/virtio/virtio_ring.ko") == []
    assert read_depends(modules_tree / "extra/nodeps.ko") == []


def test_dependencies_come_first(modules_tree: Path) -> None:
    selected = select_modules(modules_tree, ["virtio_pci"])

    assert names(selected.ordered) == ["virtio_ring", "virtio", "virtio_pci"]
    assert selected.ordered[-1] == modules_tree / "kernel/drivers/virtio/virtio_pci.ko"


def test_shared_dependencies_are_loaded_once(modules_tree: Path) -> None:
    selected = select_modules(modules_tree, ["virtio_pci", "virtio_blk", "my-driver"])

    assert names(selected.ordered) == ["virtio_ring", "virtio", "virtio_pci", "virtio_blk", "my_driver"]


def test_built_in_modules_are_skipped(modules_tree: Path) -> None:
    selected = select_modules(modules_tree, ["virtio_pci_legacy_dev", "virtio_pci"])

    assert "virtio_pci_legacy_dev" not in names(selected.ordered)
    assert "virtio_pci_legacy_dev" in selected.builtin


def test_a_missing_module_is_named(modules_tree: Path) -> None:
    with pytest.raises(ImageBuildError) as info:
        select_modules(modules_tree, ["xfs"])

    assert str(info.value).startswith(f"module xfs is not in {modules_tree} nor built into the kernel")


def test_a_missing_dependency_names_who_needs_it(modules_tree: Path) -> None:
    with pytest.raises(ImageBuildError) as info:
        select_modules(modules_tree, ["broken"])

    assert "module ghost (needed by broken) is not in" in str(info.value)


def test_missing_optional_modules_are_left_out(modules_tree: Path) -> None:
    selected = select_modules(modules_tree, ["virtio_blk"], optional=["virtio_console", "nodeps"])

    assert names(selected.ordered) == ["virtio_ring", "virtio", "virtio_blk", "nodeps"]


def test_a_dependency_cycle_terminates(modules_tree: Path) -> None:
    extra = modules_tree / "extra"
    (extra / "ping.ko").write_bytes(fake_ko("pong", "ping"))
    (extra / "pong.ko").write_bytes(fake_ko("ping", "pong"))

    selected = select_modules(modules_tree, ["ping"])

    assert sorted(names(selected.ordered)) == ["ping", "pong"]


def test_the_kernel_directory_wins_over_extra(modules_tree: Path) -> None:
    (modules_tree / "extra/virtio_ring.ko").write_bytes(fake_ko("", "virtio_ring"))

    selected = select_modules(modules_tree, ["virtio_ring"])

    assert selected.ordered == (modules_tree / "kernel/drivers/virtio/virtio_ring.ko",)


def test_depends_match_depmod_on_the_debian_kernel(debian_modules: Path) -> None:
    depmod: dict[str, list[str]] = {}
    for line in (debian_modules / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        depmod[module] = deps.split()

    for module in ("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko"):
        assert sorted(read_depends(debian_modules / module)) == sorted(module_name(d) for d in depmod[module])


def test_debian_virtio_pci_loads_after_everything_depmod_says_it_needs(debian_modules: Path) -> None:
    depmod: dict[str, list[str]] = {}
    for line in (debian_modules / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        depmod[module] = deps.split()

    ordered = [
        str(p.relative_to(debian_modules)) for p in select_modules(debian_modules, ["virtio_pci"]).ordered
    ]

    assert ordered[-1] == "kernel/drivers/virtio/virtio_pci.ko"
    assert sorted(ordered[:-1]) == sorted(depmod["kernel/drivers/virtio/virtio_pci.ko"])
