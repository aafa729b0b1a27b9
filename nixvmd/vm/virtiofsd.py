"""Sharing the host's root file system read-only with the guest: virtiofsd owned by its QEMU.

virtiofsd has no read-only flag, so it exports a read-only bind mount of / made in a
private mount namespace that only virtiofsd and its QEMU live in (the host's own mounts
are untouched). The QEMU launch is wrapped: `unshare` makes the namespace, a short sh
script makes the export read-only (and refuses to go on if it is not), starts virtiofsd
in the background and execs QEMU once virtiofsd listens. virtiofsd is in QEMU's process
group (Machine kills the group when the run ends), dies with its parent (PDEATHSIG), and
exits by itself when QEMU drops the vhost-user connection: it cannot outlive the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
TAG = "hostroot"

_WRAPPER = r"""
set -e
sock=$1 root=$2 vfsd=$3
shift 3
mkdir -p "$root"
mount --rbind / "$root"
for m in proc sys dev run; do umount -R -l "$root/$m" 2>/dev/null || true; done
findmnt -R -l -n -o TARGET "$root" | while read -r t; do mount -o remount,bind,ro "$t"; done
if touch "$root/.nixvmd-rw-probe" 2>/dev/null; then
	rm -f "$root/.nixvmd-rw-probe"
	echo "nixvmd: the host root export is writable; refusing to share it" >&2
	exit 1
fi
setpriv --pdeathsig KILL "$vfsd" --socket-path="$sock" -o source="$root" -o cache=always &
vfs=$!
while [ ! -S "$sock" ]; do
	kill -0 "$vfs" 2>/dev/null || { echo "nixvmd: virtiofsd did not start" >&2; exit 1; }
	sleep 0.05
done
exec "$@"
"""


def host_root_launch(qemu_argv: Sequence[str], socket_dir: Path, virtiofsd: str = VIRTIOFSD) -> list[str]:
    """`qemu_argv` wrapped so that virtiofsd serves a read-only / on `socket_dir`/virtiofs."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _WRAPPER,
        "nixvmd-hostroot",
        str(socket_dir / "virtiofs"),
        str(socket_dir / "hostroot"),
        virtiofsd,
        *qemu_argv,
    ]
