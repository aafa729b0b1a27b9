#!/bin/bash
# Fetch Debian's current 6.1 cloud kernel and unpack it, without installing it.
#
# Usage: fetch-debian-kernel.sh [DEST]
# DEST defaults to ${NIXVMD_KERNEL_CACHE:-/var/cache/nixvmd/kernels}/debian-cloud
# and ends up holding vmlinuz, config, version (e.g. 6.1.0-56-cloud-amd64) and
# modules/<version>/ with modules.dep. Does nothing if DEST already holds the
# current version. Prints DEST last.
set -euo pipefail

DEST=${1:-${NIXVMD_KERNEL_CACHE:-/var/cache/nixvmd/kernels}/debian-cloud}
META=linux-image-cloud-amd64
PATH=$PATH:/usr/sbin:/sbin

die() { echo "fetch-debian-kernel: $*" >&2; exit 1; }
log() { echo "fetch-debian-kernel: $*" >&2; }

resolve() {
    apt-cache depends "$META" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

pkg=$(resolve)
if [[ -z $pkg ]]; then
    log "$META unknown to apt-cache; running apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    pkg=$(resolve)
    [[ -n $pkg ]] || die "apt-cache cannot resolve $META; is bookworm main in sources.list?"
fi
version=${pkg#linux-image-}

if [[ -f $DEST/version && $(<"$DEST/version") == "$version" &&
      -s $DEST/vmlinuz && -s $DEST/modules/$version/modules.dep ]]; then
    echo "$DEST"
    exit 0
fi
for tool in dpkg-deb depmod; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install dpkg kmod)"
done

mkdir -p "$(dirname "$DEST")"
tmp=$(mktemp -d "$DEST.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt downloads as the unprivileged _apt user; let it write here so it
# neither fails nor warns about falling back to root.
if ((EUID == 0)) && id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi

log "downloading $pkg"
(cd "$tmp" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
debs=("$tmp"/*.deb)
[[ -f ${debs[0]} ]] || die "apt-get download $pkg produced no .deb"
dpkg-deb -x "${debs[0]}" "$tmp/root"

root=$tmp/root
[[ -d $root/lib/modules/$version ]] || root=$tmp/root/usr
[[ -f $tmp/root/boot/vmlinuz-$version && -d $root/lib/modules/$version ]] ||
    die "${debs[0]} does not contain boot/vmlinuz-$version and lib/modules/$version"
depmod -b "$root" "$version"

stage=$tmp/dest
mkdir -p "$stage/modules"
mv "$tmp/root/boot/vmlinuz-$version" "$stage/vmlinuz"
mv "$tmp/root/boot/config-$version" "$stage/config"
mv "$root/lib/modules/$version" "$stage/modules/$version"
echo "$version" >"$stage/version"
chmod 755 "$stage"

rm -rf "$DEST"
mv "$stage" "$DEST"
log "unpacked $version"
echo "$DEST"
