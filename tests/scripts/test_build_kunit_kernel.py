"""scripts/build-kunit-kernel.sh builds again when its recipe changed, and only then.

The script runs for real on a DEST whose src/ is a stand-in tree: `make` and
`scripts/config` there only write down what they were asked, so no kernel is compiled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-kunit-kernel.sh"
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")

# `scripts/config --enable X` keeps X; `make olddefconfig` turns what was kept into .config;
# `make bzImage` writes a new image each time and counts the builds.
FAKE_CONFIG = """#!/bin/sh
while [ $# -gt 0 ]; do
    [ "$1" = --enable ] && echo "CONFIG_$2=y" >> .enabled
    shift 2
done
"""
FAKE_MAKE = """#!/bin/sh
case "$*" in
    tinyconfig) : > .enabled ;;
    olddefconfig) cp .enabled .config ;;
    *bzImage) mkdir -p arch/x86/boot; echo x >> .builds; wc -l < .builds > arch/x86/boot/bzImage ;;
esac
"""


def _build(dest: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    argv = ["bash", str(SCRIPT), str(dest)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not TARBALL.is_file() or not shutil.which("dpkg-query"), reason="needs linux-source-6.1")
def test_a_kernel_of_this_recipe_is_kept_and_one_of_another_is_built_again(tmp_path: Path) -> None:
    dest = tmp_path / "kunit"
    src = dest / "src"
    (src / "scripts").mkdir(parents=True)
    (src / "Makefile").write_text("# a tree\n")
    (src / "scripts" / "config").write_text(FAKE_CONFIG)
    (src / "scripts" / "config").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    (dest / "bzImage").write_text("built before recipes were kept\n")

    first = _build(dest, bin_dir)
    assert first.returncode == 0, first.stderr
    assert "the recipe changed" in first.stderr
    assert first.stdout.splitlines()[-1] == str(dest / "bzImage")
    assert (dest / "bzImage").read_text().strip() == "1"
    assert "CONFIG_DEBUG_INFO_DWARF5=y" in (src / ".config").read_text().splitlines()

    again = _build(dest, bin_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == str(dest / "bzImage")
    assert (dest / "bzImage").read_text().strip() == "1"  # the same recipe: nothing built

    (dest / "recipe").write_text("an older recipe\n")
    changed = _build(dest, bin_dir)
    assert changed.returncode == 0, changed.stderr
    assert (dest / "bzImage").read_text().strip() == "2"
