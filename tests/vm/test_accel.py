"""Choosing the accelerator and remembering whether KVM really boots guests here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nixvmd.config.schema import Accel
from nixvmd.errors import AccelError
from nixvmd.vm.accel import AccelChoice, AccelVerdicts
from nixvmd.vm.cmdline import Accelerator

QEMU = "qemu-system-x86_64"


@pytest.fixture
def kvm_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/kvm opens (whether guests then boot under it is another matter)."""
    monkeypatch.setattr("nixvmd.vm.accel.kvm_usable", lambda: True)


@pytest.fixture
def no_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/kvm is missing or not ours to open."""
    monkeypatch.setattr("nixvmd.vm.accel.kvm_usable", lambda: False)


@pytest.fixture
def verdicts(tmp_path: Path) -> AccelVerdicts:
    """Verdicts kept in a fresh state dir."""
    return AccelVerdicts(tmp_path / "state", QEMU)


@pytest.mark.usefixtures("kvm_works")
def test_tcg_forced_is_tcg(verdicts: AccelVerdicts) -> None:
    assert verdicts.choose(Accel.TCG) == AccelChoice(Accelerator.TCG, probe=False)


@pytest.mark.usefixtures("no_kvm")
def test_kvm_forced_without_dev_kvm_says_what_to_do(verdicts: AccelVerdicts) -> None:
    with pytest.raises(AccelError) as info:
        verdicts.choose(Accel.KVM)

    message = str(info.value)
    assert "/dev/kvm cannot be opened" in message
    assert "kvm group" in message
    assert 'vm.accel = "auto" or "tcg"' in message


@pytest.mark.usefixtures("kvm_works")
def test_kvm_forced_is_kvm_even_after_a_failed_probe(verdicts: AccelVerdicts) -> None:
    verdicts.remember(False)

    assert verdicts.choose(Accel.KVM) == AccelChoice(Accelerator.KVM, probe=False)


@pytest.mark.usefixtures("no_kvm")
def test_auto_without_dev_kvm_is_tcg(verdicts: AccelVerdicts) -> None:
    assert verdicts.choose(Accel.AUTO) == AccelChoice(Accelerator.TCG, probe=False)


@pytest.mark.usefixtures("kvm_works")
def test_auto_with_an_unknown_verdict_probes_kvm(verdicts: AccelVerdicts) -> None:
    assert verdicts.choose(Accel.AUTO) == AccelChoice(Accelerator.KVM, probe=True)


@pytest.mark.usefixtures("kvm_works")
def test_a_failed_probe_is_remembered_in_accel_json(verdicts: AccelVerdicts, tmp_path: Path) -> None:
    verdicts.kvm_failed()

    assert list(json.loads((tmp_path / "state/accel.json").read_text()).values()) == [False]
    assert verdicts.choose(Accel.AUTO) == AccelChoice(Accelerator.TCG, probe=False)
    assert AccelVerdicts(tmp_path / "state", QEMU).choose(Accel.AUTO) == AccelChoice(
        Accelerator.TCG, probe=False
    )


@pytest.mark.usefixtures("kvm_works")
def test_a_good_verdict_goes_straight_to_kvm(verdicts: AccelVerdicts, tmp_path: Path) -> None:
    verdicts.remember(True)

    assert AccelVerdicts(tmp_path / "state", QEMU).choose(Accel.AUTO) == AccelChoice(
        Accelerator.KVM, probe=False
    )


@pytest.mark.usefixtures("kvm_works")
def test_kvm_failed_warns_once(verdicts: AccelVerdicts, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nixvmd.vm.accel"):
        verdicts.kvm_failed()
        verdicts.kvm_failed()

    warnings = [r for r in caplog.records if r.name == "nixvmd.vm.accel" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "using TCG from now on" in warnings[0].getMessage()
    assert str(verdicts.path) in warnings[0].getMessage()


@pytest.mark.usefixtures("kvm_works")
def test_a_verdict_for_another_host_is_not_used(verdicts: AccelVerdicts, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/accel.json").write_text(
        json.dumps({"5.10.0-other|/usr/bin/qemu-system-x86_64|1": False})
    )

    assert verdicts.choose(Accel.AUTO) == AccelChoice(Accelerator.KVM, probe=True)


@pytest.mark.usefixtures("kvm_works")
def test_a_verdict_for_another_qemu_is_not_used(tmp_path: Path) -> None:
    AccelVerdicts(tmp_path, "/opt/qemu-9/bin/qemu-system-x86_64").kvm_failed()

    assert AccelVerdicts(tmp_path, QEMU).choose(Accel.AUTO) == AccelChoice(Accelerator.KVM, probe=True)


@pytest.mark.usefixtures("kvm_works")
def test_verdicts_of_other_hosts_are_kept(verdicts: AccelVerdicts, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    other = {"5.10.0-other|/usr/bin/qemu-system-x86_64|1": True}
    (tmp_path / "state/accel.json").write_text(json.dumps(other))

    verdicts.kvm_failed()

    saved = json.loads((tmp_path / "state/accel.json").read_text())
    assert saved == {**other, verdicts.key: False}


@pytest.mark.usefixtures("kvm_works")
def test_a_corrupt_accel_json_means_unknown(verdicts: AccelVerdicts, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/accel.json").write_text("{not json")

    assert verdicts.choose(Accel.AUTO) == AccelChoice(Accelerator.KVM, probe=True)
