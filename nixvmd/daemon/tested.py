"""What has been tested already: the last verdict per (kernel, effective config, guest image).

A daemon that restarts (Restart=on-failure, a reboot, right after `nixvmd --once`) or a
kernel image rewritten with the same bytes would otherwise run a suite again on something
it has judged already; with a four-hour fstests run that is an afternoon. The memory lives
in `<state_dir>/tested.json`, so it outlives the daemon.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixvmd.config.schema import Config
from nixvmd.image.backend import Backend
from nixvmd.image.dev_tree_build import dev_tree_identity
from nixvmd.results.record import RunRecord
from nixvmd.suite.xfstests.tree import tree_digest, watched_tree
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger("nixvmd")

KEEP = 64  # verdicts remembered; the oldest go first
FILE_NAME = "tested.json"


@dataclass(frozen=True)
class Verdict:
    """How a run judged a kernel: the run, its outcome and the build it tested."""

    run_id: str
    outcome: str
    build: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def config_fingerprint(config: Config) -> str:
    """A digest of the config keys that can change a run's verdict.

    Everything but [notify] (who hears about a verdict), [daemon] (where it is kept) and
    `xfstests.on_change` (what is watched): the kernel's command line and modules, the
    image, the VM, the suite and fstests.
    """
    effective = {
        name: dataclasses.asdict(getattr(config, name))
        for name in ("kernel", "image", "vm", "suite", "xfstests")
    }
    del effective["xfstests"]["on_change"]
    text = json.dumps(effective, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(config: Config, kernel_digest: str, image: str) -> str:
    """The identity of a run's inputs: kernel bytes, effective config and guest image."""
    text = json.dumps([kernel_digest, config_fingerprint(config), image])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def key_of(config: Config, kernel: KernelImage, backend: Backend) -> str | None:
    """The run key of `kernel` with `config` on the backend's image; None when that is unknown.

    A watched fstests tree is an input too (`guest_inputs`).
    """
    image = backend.identity(config, kernel)
    if image is None:
        return None
    return run_key(config, kernel.digest, guest_inputs(config, image + dev_tree_identity(config)))


def guest_inputs(config: Config, image: str) -> str:
    """What the guest runs besides the kernel: the image's identity and a watched fstests tree's digest."""
    tree = watched_tree(config)
    return image if tree is None else f"{image} fstests {tree_digest(tree)}"


class TestedKernels:
    """The last verdict per run key, kept in the state dir across restarts.

    Only verdicts on the kernel are remembered (passed, failed, crashed, timeout): a run that
    nixvmd could not carry out or that was cancelled has not tested anything, so the same
    kernel is run again.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._verdicts: dict[str, Verdict] = self._load()

    def verdict(self, key: str) -> Verdict | None:
        """The remembered verdict for `key`, if any."""
        return self._verdicts.get(key)

    def why_not_run(self, key: str | None, running: tuple[str, RunRecord] | None) -> str | None:
        """Why a kernel with run key `key` needs no run (tested, or being tested); None: it does.

        `running` is the run going on, if any: its key and record.
        """
        if key is None:
            return None
        if running is not None and running[0] == key:
            return f"kernel {running[1].build} unchanged: run {running[1].id} is testing it"
        verdict = self.verdict(key)
        if verdict is None:
            return None
        return (
            f"kernel {verdict.build} unchanged since run {verdict.run_id} ({verdict.outcome}); "
            "nixvmctl run to test it again"
        )

    def remember(self, key: str, record: RunRecord) -> None:
        """Remember `record`'s verdict for `key` (nothing when it has none); best effort on disk."""
        if not record.is_verdict() or record.outcome is None:
            return
        self._verdicts.pop(key, None)  # re-inserted last: the newest
        self._verdicts[key] = Verdict(record.id, record.outcome.value, record.build)
        while len(self._verdicts) > KEEP:
            del self._verdicts[next(iter(self._verdicts))]
        self._save()

    def _load(self) -> dict[str, Verdict]:
        try:
            data = json.loads(self.path.read_text())
            return {
                str(key): Verdict(str(v["run_id"]), str(v["outcome"]), str(v.get("build", "")))
                for key, v in data["verdicts"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Losing this memory costs one run again, never correctness.
            log.warning("%s unreadable (%s); kernels already tested will be run again", self.path, exc)
            return {}

    def _save(self) -> None:
        data: dict[str, Any] = {
            "version": 1,
            "verdicts": {key: v.to_json() for key, v in self._verdicts.items()},
        }
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{FILE_NAME}.")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.warning(
                "cannot write %s (%s); after a restart this kernel is tested again",
                self.path,
                exc.strerror or exc,
            )
