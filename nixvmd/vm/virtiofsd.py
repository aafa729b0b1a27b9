"""Host directories shared read-only with the guest over virtiofs: virtiofsd owned by its QEMU.

virtiofsd has no read-only flag, so each export is a read-only bind mount (of / for the
host root, of a directory such as an fstests tree) made in a private mount namespace that
only the virtiofsds and their QEMU live in (the host's own mounts are untouched). The QEMU
launch is wrapped: `unshare` makes the namespace, a short sh script makes each export
read-only (and refuses to go on if one is not), starts its virtiofsd in the background and
execs QEMU once every virtiofsd listens. Each virtiofsd is in QEMU's process group (Machine
kills the group when the run ends), dies with its parent (PDEATHSIG), and exits by itself
when QEMU drops the vhost-user connection: none can outlive the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
TAG = "hostroot"

_WRAPPER = r"""
set -e
vfsd=$1
shift
while [ "$1" != -- ]; do
	sock=$1 source=$2 root=$3
	shift 3
	mkdir -p "$root"
	mount --rbind "$source" "$root"
	if [ "$source" = / ]; then
		for m in proc sys dev run; do umount -R -l "$root/$m" 2>/dev/null || true; done
	fi
	findmnt -R -l -n -o TARGET "$root" | while read -r t; do mount -o remount,bind,ro "$t"; done
	if touch "$root/.nixvmd-rw-probe" 2>/dev/null; then
		rm -f "$root/.nixvmd-rw-probe"
		echo "nixvmd: the export of $source is writable; refusing to share it" >&2
		exit 1
	fi
	setpriv --pdeathsig KILL "$vfsd" --socket-path="$sock" -o source="$root" -o cache=always &
	vfs=$!
	while [ ! -S "$sock" ]; do
		kill -0 "$vfs" 2>/dev/null || { echo "nixvmd: virtiofsd for $source did not start" >&2; exit 1; }
		sleep 0.05
	done
done
shift
exec "$@"
"""


@dataclass(frozen=True)
class Export:
    """One host directory served read-only by its own virtiofsd on `socket`.

    `mount_point` is where the read-only bind mount is made inside the private namespace
    (a path in the run's socket dir; it exists only for the namespace's life).
    """

    source: Path
    socket: Path
    mount_point: Path


def virtiofs_launch(
    qemu_argv: Sequence[str], exports: Sequence[Export], virtiofsd: str = VIRTIOFSD
) -> list[str]:
    """`qemu_argv` wrapped so that a virtiofsd serves each of `exports` read-only before QEMU starts."""
    triples = [str(part) for e in exports for part in (e.socket, e.source, e.mount_point)]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _WRAPPER,
        "nixvmd-virtiofs",
        virtiofsd,
        *triples,
        "--",
        *qemu_argv,
    ]


def host_root_export(socket_dir: Path) -> Export:
    """The host's / as the guest's root share, its socket in `socket_dir`."""
    return Export(Path("/"), socket_dir / "virtiofs", socket_dir / "hostroot")


def host_root_launch(qemu_argv: Sequence[str], socket_dir: Path, virtiofsd: str = VIRTIOFSD) -> list[str]:
    """`qemu_argv` wrapped so that virtiofsd serves a read-only / on `socket_dir`/virtiofs."""
    return virtiofs_launch(qemu_argv, [host_root_export(socket_dir)], virtiofsd)
