"""The direct backend with vm.network = "user": the NIC, its module, and what the job tells the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Network
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.direct import guest_ssh_keys, prepare_direct
from nixvmd.vm.cmdline import Accelerator, MachineSpec, Sockets
from nixvmd.vm.network import user_net_options
from nixvmd.watch.kernel_image import read_kernel_image

SAMPLE = Path("/var/cache/nixvmd/kernels/debian-cloud")

pytestmark = pytest.mark.skipif(not (SAMPLE / "vmlinuz").is_file(), reason="no sample kernel")


def _prepare(tmp_path: Path, share: bool) -> tuple[list[str], str, set[str]]:
    config = parse_config(
        f'[kernel]\ntree = "{SAMPLE}"\nimage = "vmlinuz"\nmodules_dir = "modules"\n'
        f"[image]\nshare_host_root = {'true' if share else 'false'}\n"
        f'[vm]\nnetwork = "user"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n',
        name="nixvmd.toml",
        base=tmp_path,
    )
    kernel = read_kernel_image(SAMPLE / "vmlinuz")
    sockets = Sockets(tmp_path / "qmp", tmp_path / "agent")
    spec = MachineSpec(Accelerator.TCG, 768 << 20, 2, sockets, tmp_path / "console.log", network=Network.USER)
    initrd = tmp_path / "initrd.cpio"
    job = GuestJob("command", "true")
    launch, base = prepare_direct(
        config, kernel, job, spec, initrd, tmp_path / "cache", guest_ssh_keys(config)
    )
    added = initrd.read_bytes()[base.path.stat().st_size :].decode(errors="replace")
    return list(launch.argv), added, {Path(m).name.split(".ko")[0] for m in base.modules}


def test_the_guest_gets_the_nic_its_module_and_the_hosts_sshd(tmp_path: Path) -> None:
    argv, job, modules = _prepare(tmp_path, share=True)
    at = argv.index("-netdev")
    assert argv[at : at + 4] == user_net_options()
    assert "virtio_net" in modules
    assert "NIXVMD_NETWORK=user" in job
    assert "NIXVMD_SSHD=/usr/sbin/sshd" in job
    public = (tmp_path / "state" / "ssh" / "id_ed25519.pub").read_text().strip()
    assert public in job
    assert "PasswordAuthentication no" in job


def test_without_the_shared_root_the_network_comes_up_but_no_sshd_is_started(tmp_path: Path) -> None:
    argv, job, modules = _prepare(tmp_path, share=False)
    assert "-netdev" in argv and "virtio_net" in modules
    assert "NIXVMD_NETWORK=user" in job
    assert "NIXVMD_SSHD" not in job
    assert not (tmp_path / "state" / "ssh").exists()
