"""Reading nixvmd.toml: values, every problem at once with file:line, paths, defaults, lookup."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nixvmd.config.load import find_config_file, load_config
from nixvmd.config.schema import Accel, Backend, Config, DiskConfig, SuiteKind
from nixvmd.errors import ConfigError

WriteConfig = Callable[[str], Path]

GOOD = """\
[kernel]
tree = "linux"
cmdline = "quiet"
modules = ["fs/xfs/xfs.ko"]

[image]
backend = "nix"
nix_file = "vm.nix"
inputs = ["extra.nix"]

[vm]
accel = "tcg"
memory = "1G"
cpus = 4
qemu_options = ["-smp", "sockets=1"]
boot_timeout = "90s"
disks = [{ name = "test", size = "2G", serial = "TESTDISK" }, { name = "scratch", size = "512M" }]

[suite]
kind = "kunit"
timeout = "1h30m"

[notify]
on = ["fail", "pass"]

[daemon]
state_dir = "state"
socket = "/tmp/nixvmd-test.sock"
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An empty directory that holds the config file under test."""
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


@pytest.fixture
def write_config(config_dir: Path) -> WriteConfig:
    """Writes the given TOML to <config_dir>/nixvmd.toml and returns its path."""

    def write(text: str) -> Path:
        path = config_dir / "nixvmd.toml"
        path.write_text(text)
        return path

    return write


def problems_of(path: Path) -> list[str]:
    """The problems load_config reports for `path` (the test fails if it accepts the file)."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_a_good_file_gives_typed_values(write_config: WriteConfig, config_dir: Path) -> None:
    config = load_config(write_config(GOOD))

    assert config.kernel.tree == config_dir / "linux"
    assert config.kernel_image == config_dir / "linux" / "arch/x86/boot/bzImage"
    assert config.kernel.cmdline == "quiet"
    assert config.kernel.modules == (config_dir / "linux" / "fs/xfs/xfs.ko",)
    assert config.image.backend is Backend.NIX
    assert config.image.nix_file == config_dir / "vm.nix"
    assert config.image.inputs == (config_dir / "extra.nix",)
    assert config.vm.accel is Accel.TCG
    assert config.vm.memory == 1 << 30
    assert config.vm.cpus == 4
    assert config.vm.qemu_options == ("-smp", "sockets=1")
    assert config.vm.boot_timeout == 90.0
    assert config.vm.disks == (
        DiskConfig(name="test", size=2 << 30, serial="TESTDISK"),
        DiskConfig(name="scratch", size=512 << 20, serial="nixvmd-scratch"),
    )
    assert config.suite.kind is SuiteKind.KUNIT
    assert config.suite.timeout == 5400.0
    assert config.notify.on == ("fail", "pass")
    assert config.daemon.state_dir == config_dir / "state"
    assert config.daemon.socket == Path("/tmp/nixvmd-test.sock")
    assert config.source == config_dir / "nixvmd.toml"


def test_an_empty_file_gives_the_documented_defaults(write_config: WriteConfig, config_dir: Path) -> None:
    config = load_config(write_config(""))

    assert config.kernel.tree == config_dir
    assert config.kernel_image == config_dir / "arch/x86/boot/bzImage"
    assert config.image.backend is Backend.DIRECT
    assert config.vm.accel is Accel.AUTO
    assert config.vm.memory == 2 << 30
    assert config.vm.boot_timeout == 120.0
    assert config.suite.kind is SuiteKind.COMMAND
    assert config.suite.command == "uname -r"
    assert config.suite.timeout == 1800.0


def test_bad_size_is_reported_as_file_line_key_message(
    write_config: WriteConfig, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config('[kernel]\ntree = "."\n\n[vm]\ncpus = 2\n# memory for the guest\nmemory = "lots"\n')
    monkeypatch.chdir(config_dir)

    assert problems_of(Path("nixvmd.toml")) == [
        "nixvmd.toml:7: vm.memory: expected a size like '2G', got 'lots'"
    ]


def test_every_problem_is_reported_at_once_with_its_line(write_config: WriteConfig) -> None:
    path = write_config(
        "[kernel]\n"  # 1
        'tre = "~/src/linux"\n'  # 2
        "\n"  # 3
        "[vm]\n"  # 4
        'memory = "lots"\n'  # 5
        'cpus = "two"\n'  # 6
        'accel = "fast"\n'  # 7
        "\n"  # 8
        "[suite]\n"  # 9
        'timeout = "forever"\n'  # 10
        "\n"  # 11
        "[vmm]\n"  # 12
        "memory = 1\n"  # 13
    )

    problems = problems_of(path)

    assert len(problems) == 6
    expected_starts = [
        f"{path}:2: kernel.tre: unknown key",
        f"{path}:5: vm.memory: expected a size like '2G', got 'lots'",
        f"{path}:6: vm.cpus: expected a whole number",
        f"{path}:7: vm.accel: expected one of 'auto', 'kvm', 'tcg', got 'fast'",
        f"{path}:10: suite.timeout: expected a duration like '30m'",
        f"{path}:12: vmm: unknown section",
    ]
    for start in expected_starts:
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_unknown_key_lists_the_known_ones(write_config: WriteConfig) -> None:
    (problem,) = problems_of(write_config('[suite]\ncomand = "true"\n'))

    assert "suite.comand: unknown key" in problem
    assert "command" in problem.split("known keys", 1)[1]


def test_unknown_top_level_key_is_an_error(write_config: WriteConfig) -> None:
    (problem,) = problems_of(write_config('memory = "2G"\n'))

    assert problem.endswith(
        ":1: memory: unknown section or key (known sections: " + problem.split("sections: ")[1]
    )
    assert "[vm]" in problem


def test_syntax_error_names_its_line(write_config: WriteConfig) -> None:
    path = write_config('[vm]\ncpus = 2\nmemory = \n[suite]\ncommand = "x"\n')

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:3: not valid TOML")


def test_unclosed_table_header_names_its_line(write_config: WriteConfig) -> None:
    path = write_config('[kernel]\ntree = "."\n[vm\n')

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:3: not valid TOML")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[vm]\ncpus = '2'\n", "vm.cpus: expected a whole number of at least 1, got a string ('2')"),
        ("[vm]\ncpus = 0\n", "vm.cpus: expected a whole number of at least 1, got a number (0)"),
        ("[vm]\ncpus = true\n", "vm.cpus: expected a whole number of at least 1, got a boolean (True)"),
        ("[vm]\nmemory = true\n", "vm.memory: expected a size like '2G', got a boolean (True)"),
        ("[vm]\nmemory = '16M'\n", "vm.memory: expected at least 32M of guest memory, got '16M'"),
        ("[vm]\nqemu_options = '-s'\n", "vm.qemu_options: expected a list of strings, got a string ('-s')"),
        ("[vm]\nqemu_options = ['-s', 1]\n", "vm.qemu_options: expected a list of strings"),
        ("[vm]\nboot_timeout = '0s'\n", "vm.boot_timeout: expected a duration above zero, got '0s'"),
        ("[kernel]\ncmdline = 3\n", "kernel.cmdline: expected a string, got a number (3)"),
        ("[image]\nbackend = 'docker'\n", "image.backend: expected one of 'direct', 'nix', got 'docker'"),
        (
            "[suite]\nkind = 'ltp'\n",
            "suite.kind: expected one of 'xfstests', 'kunit', 'kselftest', 'command'",
        ),
        ("[notify]\non = ['explode']\n", "notify.on: unknown event 'explode'"),
        ("[daemon]\nsettle = 'now'\n", "daemon.settle: expected a duration like '30m'"),
    ],
)
def test_wrong_types_and_values_are_reported(write_config: WriteConfig, toml: str, expected: str) -> None:
    path = write_config(toml)

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:2: {expected}")


def test_a_section_that_is_not_a_table_is_reported(write_config: WriteConfig) -> None:
    path = write_config("vm = 3\n")

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:1: vm: expected a table [vm]")


def test_nix_file_and_flake_together_are_refused(write_config: WriteConfig) -> None:
    (problem,) = problems_of(write_config("[image]\nbackend = 'nix'\nnix_file = 'vm.nix'\nflake = '.#vm'\n"))

    assert "image.flake: give either image.nix_file or image.flake, not both" in problem


def test_shards_on_nix_with_a_nixos_guest_are_refused_until_that_guest_can_be_a_derivations(
    write_config: WriteConfig,
) -> None:
    nixos = "[image]\nbackend = 'nix'\n[distribute]\nengine = 'nix'\n"
    (problem,) = problems_of(write_config(nixos))

    assert 'distribute.engine: "nix" runs shards in the direct backend\'s guest, not a NixOS' in problem
    assert load_config(write_config("[distribute]\nengine = 'nix'\n")).distribute.engine == "nix"


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}: cannot read the config file")


def test_disks_as_an_array_of_tables(write_config: WriteConfig) -> None:
    config = load_config(
        write_config(
            "[[vm.disks]]\nname = 'test'\nsize = '1G'\n\n[[vm.disks]]\nname = 'scratch'\nserial = 'SCR'\n"
        )
    )

    assert [(d.name, d.size, d.serial) for d in config.vm.disks] == [
        ("test", 1 << 30, "nixvmd-test"),
        ("scratch", 1 << 30, "SCR"),
    ]


@pytest.mark.parametrize(
    ("disks", "expected"),
    [
        ("[{ name = 'bad name!' }]", "vm.disks[0].name: expected a short name"),
        ("[{ name = '-dash-first' }]", "vm.disks[0].name: expected a short name"),
        ("[{ name = 'a', size = 'huge' }]", "vm.disks[0].size: expected a size like '2G', got 'huge'"),
        ("[{ name = 'a', serial = 'has space' }]", "vm.disks[0].serial: expected up to 20 letters"),
        (
            "[{ name = 'a', serial = '123456789012345678901' }]",
            "vm.disks[0].serial: expected up to 20 letters",
        ),
        ("[{ name = 'a', serial = '' }]", "vm.disks[0].serial: expected up to 20 letters"),
        ("[{ name = 'a', colour = 'red' }]", "vm.disks[0].colour: unknown key"),
        ("[{ name = 'a' }, { name = 'a' }]", "vm.disks: the name 'a' is used twice"),
        ("[{ name = 'a', serial = 'S1' }, { name = 'b', serial = 'S1' }]", "vm.disks: the serial 'S1'"),
        ("['test']", "vm.disks[0]: expected a table"),
        ("'test'", "vm.disks: expected a list of tables"),
    ],
)
def test_bad_disks_are_reported_on_the_disks_line(
    write_config: WriteConfig, disks: str, expected: str
) -> None:
    path = write_config(f"[vm]\ncpus = 1\ndisks = {disks}\n")

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:3: {expected}")


def test_a_serial_of_exactly_twenty_characters_is_fine(write_config: WriteConfig) -> None:
    config = load_config(write_config("[vm]\ndisks = [{ name = 'a', serial = '12345678901234567890' }]\n"))

    assert config.vm.disks[0].serial == "12345678901234567890"


def test_default_serials_that_would_collide_are_refused(write_config: WriteConfig) -> None:
    # Both default to "nixvmd-" + the name cut to 20 characters: the guest could not tell them apart.
    path = write_config("[vm]\ndisks = [{ name = 'scratch-disk-one' }, { name = 'scratch-disk-two' }]\n")

    (problem,) = problems_of(path)

    assert "the serial 'nixvmd-scratch-disk-'" in problem


def test_relative_paths_are_taken_from_the_config_files_directory(
    write_config: WriteConfig, config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        "[kernel]\ntree = 'src/linux'\nimage = 'out/bzImage'\nmodules_dir = 'mods'\n"
        "[image]\nnix_file = 'nix/vm.nix'\nbusybox = 'bin/busybox'\n"
        "[daemon]\nstate_dir = 'state'\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(Path(os.path.relpath(path, elsewhere)))

    assert config.kernel.tree == config_dir / "src/linux"
    assert config.kernel_image == config_dir / "src/linux/out/bzImage"
    assert config.kernel.modules_dir == config_dir / "src/linux/mods"
    assert config.image.nix_file == config_dir / "nix/vm.nix"
    assert config.image.busybox == config_dir / "bin/busybox"
    assert config.daemon.state_dir == config_dir / "state"


def test_absolute_image_is_not_under_the_tree(write_config: WriteConfig) -> None:
    config = load_config(write_config("[kernel]\ntree = '/src/linux'\nimage = '/boot/vmlinuz'\n"))

    assert config.kernel_image == Path("/boot/vmlinuz")


def test_tilde_and_variables_are_expanded(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NIXVMD_TEST_BUILD", "/build/out")
    monkeypatch.setenv("NIXVMD_TEST_RUNTIME", "/run/user/4242")

    config = load_config(
        write_config(
            "[kernel]\ntree = '~/src/linux'\nimage = '$NIXVMD_TEST_BUILD/bzImage'\n"
            "modules_dir = '~/mods'\n"
            "[image]\ninputs = ['${NIXVMD_TEST_BUILD}/extra.nix']\n"
            "[daemon]\nsocket = '$NIXVMD_TEST_RUNTIME/nixvmd/control.sock'\nstate_dir = '~/state'\n"
        )
    )

    assert config.kernel.tree == home / "src/linux"
    assert config.kernel_image == Path("/build/out/bzImage")
    assert config.kernel.modules_dir == home / "mods"
    assert config.image.inputs == (Path("/build/out/extra.nix"),)
    assert config.daemon.socket == Path("/run/user/4242/nixvmd/control.sock")
    assert config.daemon.state_dir == home / "state"


def test_tilde_in_the_image_path_is_expanded(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    config = load_config(write_config("[kernel]\ntree = '/src/linux'\nimage = '~/kernels/bzImage'\n"))

    assert config.kernel_image == tmp_path / "home/kernels/bzImage"


@pytest.mark.parametrize("key", ["kernel.tree", "kernel.image", "kernel.modules_dir", "daemon.state_dir"])
def test_an_unset_variable_is_an_error(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.delenv("NIXVMD_TEST_UNSET", raising=False)
    section, name = key.split(".")
    path = write_config(f"[{section}]\n{name} = '$NIXVMD_TEST_UNSET/x'\n")

    (problem,) = problems_of(path)

    assert problem == f"{path}:2: {key}: '$NIXVMD_TEST_UNSET/x' names an unset environment variable"


def test_a_socket_path_of_107_bytes_is_accepted(write_config: WriteConfig) -> None:
    socket = "/tmp/" + "s" * 102
    assert len(socket) == 107

    config = load_config(write_config(f"[daemon]\nsocket = '{socket}'\n"))

    assert config.daemon.socket == Path(socket)


def test_a_socket_path_over_107_bytes_is_refused(write_config: WriteConfig) -> None:
    socket = "/tmp/" + "s" * 103
    path = write_config(f"[daemon]\nsocket = '{socket}'\n")

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}:2: daemon.socket: {socket} is longer than the 107 bytes")


def test_the_default_socket_lives_in_the_runtime_dir(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")

    config = load_config(write_config(""))

    assert config.daemon.socket == Path("/run/user/4242/nixvmd/control.sock")


def test_builtin_defaults_give_the_sample_kernel_direct_backend_and_smoke_suite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NIXVMD_KERNEL_CACHE", raising=False)
    sample = Path("/var/cache/nixvmd/kernels/debian-cloud")

    config = load_config(None)

    assert config.source is None
    assert config.kernel.tree == sample
    assert config.kernel_image == sample / "vmlinuz"
    assert config.kernel.modules_dir == sample / "modules"
    assert config.image.backend is Backend.DIRECT
    assert config.suite.kind is SuiteKind.COMMAND
    assert config.suite.command == "nixvmd-smoke"
    assert [d.name for d in config.vm.disks] == ["scratch"]


def test_builtin_defaults_follow_the_kernel_cache_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIXVMD_KERNEL_CACHE", str(tmp_path))

    config = load_config(None)

    assert config.kernel_image == tmp_path / "debian-cloud" / "vmlinuz"


def test_find_config_file_prefers_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    xdg = tmp_path / "xdg"
    (xdg / "nixvmd").mkdir(parents=True)
    cwd.mkdir()
    (xdg / "nixvmd" / "config.toml").write_text("")
    (cwd / "nixvmd.toml").write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))

    assert find_config_file(cwd) == cwd / "nixvmd.toml"


def test_find_config_file_falls_back_to_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "nixvmd").mkdir(parents=True)
    (xdg / "nixvmd" / "config.toml").write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))

    assert find_config_file(tmp_path) == xdg / "nixvmd" / "config.toml"


def test_find_config_file_uses_dot_config_without_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config" / "nixvmd").mkdir(parents=True)
    (tmp_path / ".config" / "nixvmd" / "config.toml").write_text("")

    assert find_config_file(tmp_path / ".config") == tmp_path / ".config" / "nixvmd" / "config.toml"


def test_find_config_file_finds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))

    assert find_config_file(tmp_path) is None


def test_find_config_file_defaults_to_the_process_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "nixvmd.toml").write_text("")
    monkeypatch.chdir(tmp_path)

    assert find_config_file() == tmp_path / "nixvmd.toml"


def test_loading_the_same_text_twice_gives_equal_configs(write_config: WriteConfig) -> None:
    path = write_config(GOOD)

    first: Config = load_config(path)

    assert load_config(path) == first


def test_bad_disk_in_an_array_of_tables_is_reported_on_its_own_line(write_config: WriteConfig) -> None:
    path = write_config(
        "[vm]\ncpus = 1\n\n[[vm.disks]]\nname = 'test'\n\n"
        "[[vm.disks]]\nname = 'scratch'\nsize = 'huge'\ncolour = 'red'\n"
    )

    problems = problems_of(path)

    assert sorted(problems) == [
        f"{path}:10: vm.disks[1].colour: unknown key (known: name, path, size, serial, readonly, format)",
        f"{path}:9: vm.disks[1].size: expected a size like '2G', got 'huge'",
    ]
