"""The direct backend with vm.network = "user": the NIC, its module, and what the job tells the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.vm.network import user_net_options
from tests.image.test_direct_host_root import SAMPLE, prepare

pytestmark = pytest.mark.skipif(not (SAMPLE / "vmlinuz").is_file(), reason="no sample kernel")


def _prepare(tmp_path: Path, share: bool) -> tuple[list[str], str, set[str]]:
    extra = f'[vm]\nnetwork = "user"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    argv, job, modules = prepare(tmp_path, share, extra)
    return argv, job, {Path(m).name.split(".ko")[0] for m in modules}


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
