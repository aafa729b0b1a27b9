"""`nixvmctl init --nix`: a vm.nix importing the installed guest.nix, and a nix-backend config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixvmd.ctl import init


def nixvmctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The default state dir (where init --nix makes nixvmd's ssh keys) in the test's own place.
    env = dict(os.environ, XDG_STATE_HOME=str(cwd.parent / "state"))
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def nix_parse(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")
    return subprocess.run(
        ["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "linux"
    root.mkdir()
    (root / "Kbuild").write_text("")
    return root


def test_init_nix_writes_a_vm_nix_importing_the_installed_guest_module(tree: Path) -> None:
    done = nixvmctl(tree, "init", "--nix")
    assert done.returncode == 0, done.stderr
    vm_nix = (tree / "vm.nix").read_text()
    imports = re.findall(r"^  nixvmdGuest = (\S+);$", vm_nix, re.MULTILINE)
    assert len(imports) == 1, vm_nix
    guest = Path(imports[0])
    assert guest.is_absolute() and guest.is_file()
    assert guest.samefile(Path(init.__file__).parent.parent / "nix" / "guest.nix")
    assert "./guest.nix" not in vm_nix
    keys = re.findall(r"^  nixvmdSshKey = (\S+);$", vm_nix, re.MULTILINE)
    assert keys == [str(tree.parent / "state" / "nixvmd" / "ssh" / "id_ed25519.pub")], vm_nix
    assert Path(keys[0]).read_text().startswith("ssh-ed25519 ")
    parsed = nix_parse(tree / "vm.nix")
    assert parsed.returncode == 0, parsed.stderr
    assert str(guest) in parsed.stdout

    check = nixvmctl(tree, "config", "check", "nixvmd.toml")
    assert check.returncode == 0, check.stderr
    assert re.search(r'^backend = "nix"$', (tree / "nixvmd.toml").read_text(), re.MULTILINE)
    assert re.search(r'^nix_file = "vm.nix"$', (tree / "nixvmd.toml").read_text(), re.MULTILINE)


@pytest.mark.parametrize("existing", ["vm.nix", "nixvmd.toml"])
def test_init_nix_overwrites_nothing(tree: Path, existing: str) -> None:
    (tree / existing).write_text("# mine\n")
    done = nixvmctl(tree, "init", "--nix")
    assert done.returncode == 2
    assert "exists already" in done.stderr
    assert (tree / existing).read_text() == "# mine\n"
    assert sorted(p.name for p in tree.iterdir()) == sorted(["Kbuild", existing])


def test_a_guest_path_that_is_no_nix_path_literal_still_parses(tmp_path: Path) -> None:
    odd = tmp_path / "my nixvmd" / "guest.nix"
    text = init.vm_nix_text(odd)
    assert f'nixvmdGuest = (/. + "{odd}");' in text
    (tmp_path / "vm.nix").write_text(text)
    parsed = nix_parse(tmp_path / "vm.nix")
    assert parsed.returncode == 0, parsed.stderr


def test_plain_init_keeps_the_direct_backend_and_writes_no_vm_nix(tree: Path) -> None:
    done = nixvmctl(tree, "init")
    assert done.returncode == 0, done.stderr
    assert not (tree / "vm.nix").exists()
    assert re.search(r'^backend = "direct"$', (tree / "nixvmd.toml").read_text(), re.MULTILINE)


def test_the_starter_vm_nix_shows_both_ways_to_bring_a_fstests_tree(tree: Path) -> None:
    done = nixvmctl(tree, "init", "--nix")
    assert done.returncode == 0, done.stderr
    vm_nix = (tree / "vm.nix").read_text()
    assert re.search(r"^  xfstestsSrc = null;$", vm_nix, re.MULTILINE)  # packaged, with an overlay
    assert re.search(r"^  devTree = false;$", vm_nix, re.MULTILINE)  # shared: xfstests.dev_tree
    assert "xfstests.dev_tree" in vm_nix and "programs.nix-ld" in vm_nix
    assert nix_parse(tree / "vm.nix").returncode == 0
