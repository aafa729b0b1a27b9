"""What makes the nix image stale: discovered inputs, content fingerprints, the recorded build."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import NixImageSpec
from nixvmd.image.nix_inputs import (
    ImageState,
    build_and_record,
    digest,
    discover_inputs,
    fingerprint,
    is_current,
    load_state,
    local_flake_directory,
    parse_evaluation_log,
    state_file,
)
from tests.image.conftest import FIXTURE_NIXPKGS, NIX_FIXTURES, NixCallLog, force_fresh_build


def discover(spec: NixImageSpec) -> frozenset[Path]:
    return asyncio.run(discover_inputs(spec))


def record(spec: NixImageSpec, state_dir: Path, previous: ImageState | None = None) -> ImageState:
    return asyncio.run(build_and_record(spec, state_dir, lambda _line: None, previous=previous))


def test_fingerprint_is_by_content_not_by_timestamp(tmp_path: Path) -> None:
    vm = tmp_path / "vm.nix"
    vm.write_text("{ }\n")
    before = fingerprint([vm])
    os.utime(vm, (0, 0))
    assert fingerprint([vm]) == before
    vm.write_text("{ }\n")  # an editor saving identical bytes
    assert fingerprint([vm]) == before
    vm.write_text("{ boot.kernelParams = [ ]; }\n")
    assert fingerprint([vm]) != before


def test_fingerprint_walks_directories_but_not_vcs_or_editor_files(tmp_path: Path) -> None:
    src = tmp_path / "xfstests"
    (src / "tests" / "generic").mkdir(parents=True)
    (src / "tests" / "generic" / "001").write_text("#!/bin/bash\n")
    before = fingerprint([src])
    (src / ".git").mkdir()
    (src / ".git" / "index").write_text("changes all the time")
    for junk in (".001.swp", "001~", "#001#", ".#001", "4913"):
        (src / "tests" / "generic" / junk).write_text("editor noise")
    assert fingerprint([src]) == before
    (src / "tests" / "generic" / "001").chmod(0o755)
    assert fingerprint([src]) != before


def test_fingerprint_sees_files_appear_and_disappear(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    listed = tmp_path / "local.config"
    before = fingerprint([src, listed])
    listed.write_text("FSTYP=xfs\n")
    with_file = fingerprint([src, listed])
    assert with_file != before
    (src / "new.c").write_text("int x;\n")
    assert fingerprint([src, listed]) != with_file
    assert digest(tmp_path / "nothing-here") == "missing"


def test_a_fifo_among_the_inputs_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert digest(fifo) != digest(tmp_path / "other")


def test_evaluation_log_gives_files_read_and_search_roots() -> None:
    read, roots = parse_evaluation_log(
        [
            "resolved search path element '/channels' to '/channels'",
            "evaluating file '/home/me/vm/vm.nix'",
            "copied source '/home/me/vm/initrd.cpio.gz' -> '/nix/store/abc-initrd.cpio.gz'",
            "acquiring write lock on '/nix/var/nix/temproots/1'",
        ]
    )
    assert read == {Path("/home/me/vm/vm.nix"), Path("/home/me/vm/initrd.cpio.gz")}
    assert Path("/channels") in roots


def test_local_flake_directories() -> None:
    cwd = Path("/home/me/vm")
    assert local_flake_directory(".#vm", cwd) == cwd
    assert local_flake_directory("path:.#vm", cwd) == cwd
    assert local_flake_directory("../flakes/vm#x", cwd) == Path("/home/me/flakes/vm")
    assert local_flake_directory("path:/srv/f?dir=sub#vm", cwd) == Path("/srv/f")
    assert local_flake_directory("git+file:///srv/repo#vm", cwd) == Path("/srv/repo")
    assert local_flake_directory("github:me/vms#vm", cwd) is None
    assert local_flake_directory("nixpkgs#hello", cwd) is None


def test_discovery_finds_imports_copied_sources_and_read_files(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    (vm_dir / "motd.txt").write_text("hello from a file read with builtins.readFile\n")
    (vm_dir / "unrelated.txt").write_text("nobody reads me\n")
    (vm_dir / "extra.nix").write_text("{ fixture.motd = builtins.readFile ./motd.txt; }\n")
    listed = tmp_path / "xfstests-src"
    listed.mkdir()
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix", inputs=(listed,))
    assert discover(spec) == {
        vm_dir / "vm.nix",
        vm_dir / "extra.nix",  # imported
        vm_dir / "initrd.cpio.gz",  # copied to the store by "${./initrd.cpio.gz}"
        vm_dir / "motd.txt",  # read by readFile, which Nix does not log
        listed,  # image.inputs
    }


def test_discovery_leaves_out_the_channel(fixture_nix_path: str, vm_dir: Path) -> None:
    found = discover(NixImageSpec(nix_file=vm_dir / "vm.nix"))
    assert not any(p.is_relative_to(FIXTURE_NIXPKGS) for p in found)


def test_discovery_of_a_broken_configuration_still_reports_the_broken_file(
    fixture_nix_path: str, vm_dir: Path
) -> None:
    (vm_dir / "extra.nix").write_bytes((NIX_FIXTURES / "broken" / "syntax-error.nix").read_bytes())
    found = discover(NixImageSpec(nix_file=vm_dir / "vm.nix"))
    assert vm_dir / "extra.nix" in found


def test_a_local_flake_is_its_directory(flake_dir: Path, tmp_path: Path) -> None:
    spec = NixImageSpec(flake=".#vm", workdir=flake_dir, inputs=(tmp_path / "extra",))
    assert discover(spec) == {flake_dir, tmp_path / "extra"}


def test_an_unchanged_image_needs_no_nix_at_all(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path, nix_calls: NixCallLog
) -> None:
    state_dir = tmp_path / "state"
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")
    state = record(spec, state_dir)
    assert [call[0] for call in nix_calls.calls()] == ["nix-build", "nix-instantiate"]
    assert state_file(state_dir).is_file()

    loaded = load_state(state_dir)  # as a restarted daemon would
    assert loaded == state
    (vm_dir / "vm.nix").touch()
    (vm_dir / "extra.nix").write_bytes((vm_dir / "extra.nix").read_bytes())
    assert is_current(loaded, spec, state_dir)
    assert nix_calls.count() == 2

    (vm_dir / "extra.nix").write_text('{ boot.kernelParams = [ "edited" ]; }\n')
    assert not is_current(loaded, spec, state_dir)
    rebuilt = record(spec, state_dir, previous=loaded)
    assert rebuilt.image.out_path != state.image.out_path
    assert is_current(load_state(state_dir), spec, state_dir)
    assert nix_calls.count("nix-build") == 2


def test_an_edit_during_the_build_still_counts_afterwards(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")
    previous = record(spec, state_dir)
    force_fresh_build(vm_dir)

    def edit_while_building(line: str) -> None:
        if "fixture: building" in line:
            force_fresh_build(vm_dir)

    state = asyncio.run(build_and_record(spec, state_dir, edit_while_building, previous=previous))
    assert not is_current(state, spec, state_dir)


def test_what_the_build_depends_on_besides_inputs(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "state"
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")
    state = record(spec, state_dir)
    assert not is_current(state, NixImageSpec(nix_file=vm_dir / "vm.nix", nix_args=("-j1",)), state_dir)
    listed = NixImageSpec(nix_file=vm_dir / "vm.nix", inputs=(tmp_path / "new-input",))
    assert not is_current(state, listed, state_dir)
    monkeypatch.setenv("NIX_PATH", f"nixpkgs={FIXTURE_NIXPKGS}:other=/srv")
    assert not is_current(state, spec, state_dir)


def test_a_failed_build_keeps_the_last_good_record(
    fixture_nix_path: str, vm_dir: Path, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    spec = NixImageSpec(nix_file=vm_dir / "vm.nix")
    good = record(spec, state_dir)
    (vm_dir / "vm.nix").write_bytes((NIX_FIXTURES / "broken" / "syntax-error.nix").read_bytes())
    with pytest.raises(ImageBuildError):
        record(spec, state_dir, previous=good)
    assert load_state(state_dir) == good
    assert not is_current(good, spec, state_dir)


def test_a_record_whose_image_is_gone_is_no_record(tmp_path: Path) -> None:
    state_file(tmp_path).parent.mkdir(parents=True)
    state_file(tmp_path).write_text('{"version": 1, "out_path": "/nix/store/gone"}')
    assert load_state(tmp_path) is None
    state_file(tmp_path).write_text("not json")
    assert load_state(tmp_path) is None
