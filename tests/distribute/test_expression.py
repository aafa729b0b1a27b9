"""The shard derivation's pure parts: tokens pinned to a seed, the sealed QEMU options, the expression."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nixvmd.distribute.derivation import ShardInputs, nix_string, shard_expression
from nixvmd.guest.protocol import GuestJob, new_token, pinned_tokens
from nixvmd.vm.cmdline import Accelerator, Disk, MachineSpec, Sockets, machine_options

INPUTS = ShardInputs(
    name="nixvmd-shard-0",
    system="x86_64-linux",
    busybox="/nix/store/aaaa-busybox",
    script="/nix/store/bbbb-builder.sh",
    kernel="/nix/store/cccc-bzImage",
    initrd="/nix/store/dddd-initramfs.cpio",
    job="/nix/store/eeee-job.cpio",
    qemu="/nix/store/ffff-qemu",
    qemu_args=("/nix/store/ffff-qemu/bin/qemu", "-append", 'console=ttyS0 x="a b" ${HOME}'),
    store_trees=("/nix/store/gggg-fstests",),
    disks=(("test.img", 1 << 20),),
    keep_disks=("results.img",),
    deadline_s=150,
    seed="0123",
    system_features=("kvm", "nixos-test"),
)


def test_pinned_tokens_repeat_for_the_same_seed_and_differ_for_another() -> None:
    with pinned_tokens("seed-a"):
        first = (new_token(6), GuestJob("command", "true").nonce)
    with pinned_tokens("seed-a"):
        again = (new_token(6), GuestJob("command", "true").nonce)
    with pinned_tokens("seed-b"):
        other = (new_token(6), GuestJob("command", "true").nonce)
    assert first == again
    assert first[0] != first[1]
    assert other != first
    assert len(first[0]) == 12
    # Outside the block the tokens are random again.
    assert new_token(6) != new_token(6)


def test_a_sealed_machine_has_no_qmp_and_no_agent_port() -> None:
    disks = (Disk(Path("test.img"), "nixvmd-xfs-test"),)
    sealed = machine_options(MachineSpec(Accelerator.TCG, 1 << 29, 2, None, Path("console.log"), disks))
    talked_to = machine_options(
        MachineSpec(Accelerator.TCG, 1 << 29, 2, Sockets(Path("/s/qmp"), Path("/s/agent")), Path("c"), disks)
    )
    assert not [a for a in sealed if "socket" in a or a == "-mon" or "virtserialport" in a]
    assert "chardev:nixvmd-con" in sealed and "-no-reboot" in sealed
    assert "file=test.img,format=raw,if=none,id=nixvmd-disk0,cache=unsafe,discard=unmap" in sealed
    # The sealed options are the talked-to ones with the QMP and agent parts taken out, and
    # QEMU ends with the guest (-no-reboot) instead of pausing it for a vmcore nobody would take.
    dropped = [a for a in talked_to if a not in sealed]
    assert "panic=none,reboot=shutdown,shutdown=pause" in dropped
    kept = [a for a in dropped if a not in ("-mon", "panic=none,reboot=shutdown,shutdown=pause")]
    assert all("nixvmd-qmp" in a or "nixvmd-agent" in a or "vser" in a for a in kept), dropped


def test_the_expression_names_its_inputs_by_store_path_and_its_features() -> None:
    text = shard_expression(INPUTS)
    assert text.startswith("builtins.derivation {")
    assert 'builder = "${(builtins.storePath "/nix/store/aaaa-busybox")}/bin/busybox";' in text
    assert 'args = [ "sh" (builtins.storePath "/nix/store/bbbb-builder.sh") ];' in text
    assert 'requiredSystemFeatures = [ "kvm" "nixos-test" ];' in text
    assert 'storeTrees = [ (builtins.storePath "/nix/store/gggg-fstests") ];' in text
    assert "rootTrees = [ ];" in text
    assert 'disks = "test.img=1048576";' in text
    assert shard_expression(INPUTS) == text


def test_nix_strings_keep_quotes_dollars_and_newlines() -> None:
    """Nix itself reads the strings back as they were (skipped without Nix)."""
    if shutil.which("nix-instantiate") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")
    tricky = 'a "b" \\c ${HOME} $x\nline2\t' + "'quoted'"
    done = subprocess.run(
        ["nix-instantiate", "--eval", "--json", "--expr", nix_string(tricky)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == tricky
