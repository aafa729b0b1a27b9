#!/bin/bash
# Install what nixvmd and its tests need on a Debian 12 machine (idempotent; run as root
# or with sudo available): QEMU, a static busybox, the sample kernel, Nix, sshd and ssh (the
# loopback Nix builder of tests/nix_builder.py runs an sshd of its own), the desktop bits the
# notification tests use, and the Python package itself (editable, with test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh

SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo

PACKAGES=(
    qemu-system-x86 qemu-utils busybox-static cpio kmod xfsprogs e2fsprogs dash
    nix-bin openssh-client openssh-server
    dbus dunst xvfb libnotify-bin systemd python3-systemd
    linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev
    gdb
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
# The nixvmd and nixvmctl commands on PATH for a pyenv user (the scripts don't need them).
if command -v pyenv >/dev/null; then
    PYENV_REHASH_TIMEOUT=10 pyenv rehash 2>/dev/null ||
        echo "setup: 'pyenv rehash' failed; run it yourself for the nixvmd and nixvmctl commands" >&2
fi
$SUDO bash scripts/fetch-debian-kernel.sh >/dev/null
$SUDO bash scripts/setup-nix.sh >/dev/null
