"""What a set of changes means for the loop: a pure function from changes and state to steps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from nixvmd.config.declaration import ChangeKind
from nixvmd.config.schema import Config
from nixvmd.config.settings import changed_settings


@dataclass(frozen=True)
class Changes:
    """What happened since the last decision (several events coalesced)."""

    kernel: bool = False  # a new, valid kernel image
    config_runtime: bool = False  # keys a run uses but not the image (kernel image, vm, suite, xfstests)
    config_image: bool = False  # keys the guest image depends on (image.*, kernel modules)
    image_inputs: bool = False  # vm.nix, files it pulls in, image.inputs: content changed
    requested: bool = False  # someone asked for a run (nixvmctl run)
    build_ended: bool = False  # an image build ended and wants a run (a good build, or one waited)
    fstests: bool = False  # the fstests tree the guest runs changed (tests or fstests itself)
    fstests_all: bool = False  # ... in a way that concerns every test (fstests itself, on_change "all")

    def __or__(self, other: Changes) -> Changes:
        return Changes(**{f.name: getattr(self, f.name) or getattr(other, f.name) for f in fields(self)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def cause(self) -> str:
        """What happened, in words, for logs and a cancelled run's reason ("a new kernel")."""
        names = {
            "kernel": "a new kernel",
            "config_runtime": "a config change",
            "config_image": "a config change",
            "image_inputs": "a change of the image inputs",
            "requested": "a run request",
            "build_ended": "a new image",
            "fstests": "a change in the fstests tree",
        }
        causes = dict.fromkeys(text for key, text in names.items() if getattr(self, key))
        return " and ".join(causes) or "nothing"


@dataclass(frozen=True)
class LoopState:
    """What the loop is doing now."""

    running: bool = False
    building: bool = False
    paused: bool = False
    bisecting: bool = False  # a bisect has the VM: changes wait for its end
    running_full: bool = False  # the run in flight runs the configured set (not narrowed to some tests)
    have_kernel: bool = False
    image_builds: bool = False  # the backend has an image to build (nix); direct: False
    image_ready: bool = True  # the backend has an image to boot (nix: after a good build)


class Step(enum.StrEnum):
    CANCEL_RUN = "cancel-run"
    BUILD_IMAGE = "build-image"
    FOLLOW_UP_BUILD = "follow-up-build"  # a build is running: build once more when it ends
    START_RUN = "start-run"
    KEEP = "keep"  # remember the changes for later (paused)
    AWAIT_IMAGE = "await-image"  # a run is due but no image was built yet: the next good build runs
    AFTER_RUN = "after-run"  # the run in flight stays good: run once it ends


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    reason: str

    def __contains__(self, step: object) -> bool:
        return step in self.steps


def plan(changes: Changes, state: LoopState) -> Plan:
    """Decide what `changes` call for, given `state`.

    A kernel-only or runtime-only change restarts the run without touching the image; an
    image change rebuilds the image (once, however many changes arrive during a build) and
    then runs; whatever runs now is cancelled because its result would be stale. One
    change leaves a run be: an edit of some tests' files while the configured set runs
    (hours of fstests) makes none of the run's other verdicts stale, so those tests run
    after it instead of throwing it away.
    """
    if not changes:
        return Plan((), "nothing changed")
    if state.bisecting:
        return Plan((Step.KEEP,), "a bisect has the VM: this waits for its end (nixvmctl bisect --stop)")
    if state.paused and not changes.requested:
        return Plan((Step.KEEP,), "paused: the change is kept for resume")
    if state.running and state.running_full and changes == Changes(fstests=True):
        return Plan((Step.AFTER_RUN,), "fstests tree changed: its tests run after the full run in flight")
    needs_build = state.image_builds and (changes.image_inputs or changes.config_image)
    steps: list[Step] = []
    if state.running:
        steps.append(Step.CANCEL_RUN)
    if needs_build:
        steps.append(Step.FOLLOW_UP_BUILD if state.building else Step.BUILD_IMAGE)
        return Plan(tuple(steps), _why(changes) + ": rebuild the image, then run")
    if not state.have_kernel:
        return Plan(tuple(steps), _why(changes) + ": no bootable kernel yet, waiting for one")
    if state.building:
        return Plan(tuple(steps), _why(changes) + ": run when the image build ends")
    if not state.image_ready:
        steps.append(Step.AWAIT_IMAGE)
        return Plan(tuple(steps), _why(changes) + ": no image built yet, run after a good build")
    steps.append(Step.START_RUN)
    return Plan(tuple(steps), _why(changes) + ": run with the image as it is")


def _why(changes: Changes) -> str:
    names = {
        "kernel": "new kernel",
        "config_runtime": "runtime config changed",
        "config_image": "image config changed",
        "image_inputs": "image inputs changed",
        "requested": "run requested",
        "build_ended": "image build ended",
        "fstests": "fstests tree changed",
    }
    return ", ".join(text for key, text in names.items() if getattr(changes, key))


def classify_config_change(old: Config, new: Config) -> Changes:
    """Which kind of change a config reload is (the same config again is no change).

    Each key declares its kind (config/settings.py): image keys rebuild the image and run,
    runtime keys run, report keys ([notify]) are applied to the next report without a run, and
    restart keys ([daemon]) wait for nixvmd's next start; watch keys (xfstests.on_change) only
    change what is watched, which every reload looks up again.
    """
    kinds = set(changed_settings(old, new).values())
    return Changes(config_image=ChangeKind.IMAGE in kinds, config_runtime=ChangeKind.RUNTIME in kinds)
