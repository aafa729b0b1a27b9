"""The planner: what each kind of change means for the loop, in every state."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.plan.planner import Changes, LoopState, Step, classify_config_change, plan

IDLE_DIRECT = LoopState(have_kernel=True)
RUNNING_DIRECT = LoopState(running=True, have_kernel=True)
IDLE_NIX = LoopState(have_kernel=True, image_builds=True)
RUNNING_NIX = LoopState(running=True, have_kernel=True, image_builds=True)
BUILDING_NIX = LoopState(building=True, have_kernel=True, image_builds=True)

KERNEL = Changes(kernel=True)
RUNTIME = Changes(config_runtime=True)
IMAGE_INPUTS = Changes(image_inputs=True)
IMAGE_CONFIG = Changes(config_image=True)
REQUESTED = Changes(requested=True)
TEST_EDIT = Changes(fstests=True)  # a change in some tests' files of the fstests tree
FSTESTS_EDIT = Changes(fstests=True, fstests_all=True)  # common/, check, helpers: every test
RUNNING_FULL = LoopState(running=True, running_full=True, have_kernel=True)

changes_strategy = st.builds(
    Changes,
    kernel=st.booleans(),
    config_runtime=st.booleans(),
    config_image=st.booleans(),
    image_inputs=st.booleans(),
    requested=st.booleans(),
    build_ended=st.booleans(),
    fstests=st.booleans(),
    fstests_all=st.booleans(),
)
states_strategy = st.builds(
    LoopState,
    running=st.booleans(),
    building=st.booleans(),
    paused=st.booleans(),
    bisecting=st.booleans(),
    running_full=st.booleans(),
    have_kernel=st.booleans(),
    image_builds=st.booleans(),
    image_ready=st.booleans(),
)

BASE_TOML = """
[kernel]
tree = "/src/linux"
cmdline = "quiet"
modules = ["fs/xfs/xfs.ko"]

[image]
backend = "direct"

[vm]
memory = "1G"

[suite]
command = "uname -r"

[daemon]
state_dir = "/tmp/nixvmd-state"
socket = "/tmp/nixvmd.sock"
"""


def config_from(toml: str) -> Config:
    """A config parsed from `toml`, paths relative to one fixed directory."""
    return parse_config(toml, name="nixvmd.toml", base=Path("/project"))


@pytest.fixture
def base_config() -> Config:
    """A direct-backend config with a kernel module and a command suite."""
    return config_from(BASE_TOML)


def test_a_kernel_change_during_a_run_restarts_it_without_a_build() -> None:
    assert plan(KERNEL, RUNNING_NIX).steps == (Step.CANCEL_RUN, Step.START_RUN)


def test_a_kernel_change_when_idle_starts_a_run() -> None:
    assert plan(KERNEL, IDLE_DIRECT).steps == (Step.START_RUN,)


def test_a_runtime_config_change_runs_without_a_build() -> None:
    assert plan(RUNTIME, IDLE_NIX).steps == (Step.START_RUN,)
    assert plan(RUNTIME, RUNNING_NIX).steps == (Step.CANCEL_RUN, Step.START_RUN)


@pytest.mark.parametrize("change", [IMAGE_INPUTS, IMAGE_CONFIG, IMAGE_INPUTS | KERNEL])
def test_an_image_change_builds_first_and_runs_later(change: Changes) -> None:
    assert plan(change, IDLE_NIX).steps == (Step.BUILD_IMAGE,)
    assert plan(change, RUNNING_NIX).steps == (Step.CANCEL_RUN, Step.BUILD_IMAGE)


def test_an_image_change_during_a_build_asks_for_a_follow_up_build() -> None:
    assert plan(IMAGE_INPUTS, BUILDING_NIX).steps == (Step.FOLLOW_UP_BUILD,)


def test_a_kernel_change_during_a_build_waits_for_it() -> None:
    result = plan(KERNEL, BUILDING_NIX)

    assert result.steps == ()
    assert "image build" in result.reason


def test_paused_keeps_the_change() -> None:
    for change in (KERNEL, RUNTIME, IMAGE_INPUTS):
        assert plan(
            change, LoopState(paused=True, running=True, have_kernel=True, image_builds=True)
        ).steps == (Step.KEEP,)


def test_paused_still_runs_what_was_asked_for() -> None:
    assert plan(REQUESTED, LoopState(paused=True, have_kernel=True)).steps == (Step.START_RUN,)


def test_no_kernel_means_no_run() -> None:
    result = plan(RUNTIME | REQUESTED, LoopState(have_kernel=False))

    assert result.steps == ()
    assert "no bootable kernel" in result.reason


def test_no_kernel_still_builds_the_image() -> None:
    assert plan(IMAGE_INPUTS, LoopState(have_kernel=False, image_builds=True)).steps == (Step.BUILD_IMAGE,)


@pytest.mark.parametrize("change", [IMAGE_INPUTS, IMAGE_CONFIG])
def test_the_direct_backend_never_builds(change: Changes) -> None:
    assert plan(change, IDLE_DIRECT).steps == (Step.START_RUN,)
    assert plan(change, RUNNING_DIRECT).steps == (Step.CANCEL_RUN, Step.START_RUN)


def test_a_good_build_starts_a_run_and_cancels_the_stale_one() -> None:
    decision = plan(Changes(build_ended=True), RUNNING_NIX)
    assert decision.steps == (Step.CANCEL_RUN, Step.START_RUN)
    assert Changes(build_ended=True).cause() == "a new image"


def test_a_build_that_ends_while_paused_is_kept_for_resume() -> None:
    paused = LoopState(paused=True, have_kernel=True, image_builds=True)
    assert plan(Changes(build_ended=True), paused).steps == (Step.KEEP,)


def test_a_build_that_ends_without_a_kernel_starts_nothing() -> None:
    no_kernel = LoopState(image_builds=True)
    assert plan(Changes(build_ended=True), no_kernel).steps == ()


def test_a_run_without_an_image_waits_for_a_good_build() -> None:
    no_image = LoopState(have_kernel=True, image_builds=True, image_ready=False)
    for change in (KERNEL, REQUESTED, RUNTIME, Changes(build_ended=True)):
        decision = plan(change, no_image)
        assert decision.steps == (Step.AWAIT_IMAGE,)
        assert "no image built yet" in decision.reason
    assert plan(IMAGE_INPUTS, no_image).steps == (Step.BUILD_IMAGE,)


def test_a_test_edit_waits_for_the_full_run_in_flight_instead_of_throwing_it_away() -> None:
    decided = plan(TEST_EDIT, RUNNING_FULL)

    assert decided.steps == (Step.AFTER_RUN,)
    assert "after the full run in flight" in decided.reason


def test_a_test_edit_replaces_a_narrowed_run_and_starts_one_when_idle() -> None:
    assert plan(TEST_EDIT, RUNNING_DIRECT).steps == (Step.CANCEL_RUN, Step.START_RUN)
    assert plan(TEST_EDIT, IDLE_DIRECT).steps == (Step.START_RUN,)


@pytest.mark.parametrize(
    "changes", [FSTESTS_EDIT, TEST_EDIT | KERNEL, TEST_EDIT | RUNTIME, TEST_EDIT | REQUESTED]
)
def test_what_makes_the_full_run_stale_still_cancels_it(changes: Changes) -> None:
    assert plan(changes, RUNNING_FULL).steps == (Step.CANCEL_RUN, Step.START_RUN)


def test_no_change_does_nothing() -> None:
    assert plan(Changes(), RUNNING_NIX).steps == ()


def test_the_reason_names_what_changed() -> None:
    assert plan(KERNEL | RUNTIME, IDLE_DIRECT).reason.startswith("new kernel, runtime config changed")


def test_changes_combine() -> None:
    combined = KERNEL | IMAGE_INPUTS

    assert combined == Changes(kernel=True, image_inputs=True)
    assert not Changes()
    assert combined


@given(changes_strategy, states_strategy)
def test_a_plan_never_builds_and_starts_at_once(changes: Changes, state: LoopState) -> None:
    steps = plan(changes, state).steps

    assert not ({Step.BUILD_IMAGE, Step.FOLLOW_UP_BUILD} & set(steps) and Step.START_RUN in steps)


@given(changes_strategy, states_strategy)
def test_a_run_is_cancelled_exactly_when_something_changed_and_it_is_not_paused_away(
    changes: Changes, state: LoopState
) -> None:
    cancels = Step.CANCEL_RUN in plan(changes, state)

    paused_away = state.paused and not changes.requested
    test_edit_during_full_run = state.running_full and changes == TEST_EDIT
    assert cancels == (
        bool(changes)
        and state.running
        and not paused_away
        and not state.bisecting
        and not test_edit_during_full_run
    )


@given(changes_strategy, states_strategy)
def test_only_image_backends_build_and_only_with_a_kernel_runs_start(
    changes: Changes, state: LoopState
) -> None:
    steps = plan(changes, state).steps

    if not state.image_builds:
        assert Step.BUILD_IMAGE not in steps
        assert Step.FOLLOW_UP_BUILD not in steps
    if Step.START_RUN in steps:
        assert state.have_kernel
        assert not state.building
        assert state.image_ready
    if Step.BUILD_IMAGE in steps:
        assert not state.building
    if Step.KEEP in steps:
        assert steps == (Step.KEEP,)


def test_identical_configs_are_no_change(base_config: Config) -> None:
    assert not classify_config_change(base_config, config_from(BASE_TOML))


def test_a_memory_change_is_a_runtime_change(base_config: Config) -> None:
    changed = classify_config_change(base_config, config_from(BASE_TOML.replace('"1G"', '"2G"')))

    assert changed == Changes(config_runtime=True)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('cmdline = "quiet"', 'cmdline = "debug"'),
        ('command = "uname -r"', 'command = "true"'),
        ("[vm]\n", "[vm]\ncpus = 4\n"),
        ('tree = "/src/linux"', 'tree = "/src/linux"\nimage = "vmlinux"'),
    ],
)
def test_runtime_changes(base_config: Config, old: str, new: str) -> None:
    changed = classify_config_change(base_config, config_from(BASE_TOML.replace(old, new)))

    assert changed == Changes(config_runtime=True)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('backend = "direct"', 'backend = "nix"'),
        ('modules = ["fs/xfs/xfs.ko"]', 'modules = ["fs/xfs/xfs.ko", "fs/ext4/ext4.ko"]'),
        ('modules = ["fs/xfs/xfs.ko"]', 'modules = ["fs/xfs/xfs.ko"]\nmodules_dir = "/lib/modules/6.1.0"'),
        ('backend = "direct"', 'backend = "direct"\ninputs = ["extra.nix"]'),
    ],
)
def test_image_changes(base_config: Config, old: str, new: str) -> None:
    changed = classify_config_change(base_config, config_from(BASE_TOML.replace(old, new)))

    assert changed == Changes(config_image=True)


def test_a_notify_only_change_needs_no_run(base_config: Config) -> None:
    changed = classify_config_change(base_config, config_from(BASE_TOML + '\n[notify]\non = ["fail"]\n'))

    assert not changed
