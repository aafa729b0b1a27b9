#!/bin/bash
# Build a tinyconfig + KUnit kernel from Debian's linux-source-6.1.
#
# Usage: build-kunit-kernel.sh [DEST]
# DEST defaults to ${NIXVMD_KERNEL_CACHE:-/var/cache/nixvmd/kernels}/kunit-tiny.
# Leaves DEST/bzImage (a copy) and DEST/src (the built tree, so an edit plus
# `make bzImage` in it rebuilds in seconds). Build output goes to
# DEST/build.log. Prints the bzImage path last. Does nothing if DEST/bzImage
# exists and was built by this recipe (DEST/recipe holds the digest of this
# script and of the source package's version); a changed recipe rebuilds in
# DEST/src. Delete DEST/bzImage to rebuild anyway.
#
# The kernel has debug info (DWARF 5, reduced: functions and lines, enough to
# break on a function with gdb): DEST/src/vmlinux is what `nixvmctl gdb` loads.
set -euo pipefail

DEST=${1:-${NIXVMD_KERNEL_CACHE:-/var/cache/nixvmd/kernels}/kunit-tiny}
SELF=$(realpath "${BASH_SOURCE[0]}") # the recipe; read again after `cd "$SRC"`
SRC=$DEST/src
TARBALL=/usr/src/linux-source-6.1.tar.xz
LOG=$DEST/build.log

# What the tests and the direct backend need; a missing one fails the build.
REQUIRED=(64BIT PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD
    BINFMT_ELF BINFMT_SCRIPT PROC_FS SYSFS DEVTMPFS DEVTMPFS_MOUNT
    KUNIT KUNIT_ALL_TESTS PCI VIRTIO_MENU VIRTIO_PCI BLOCK BLK_DEV VIRTIO_BLK
    VIRTIO_CONSOLE EXT4_FS
    DEBUG_KERNEL DEBUG_INFO DEBUG_INFO_DWARF5 DEBUG_INFO_REDUCED)
OPTIONAL=(PVPANIC PVPANIC_PCI KERNEL_GZIP)
# Pulled in as defaults of the above but unused; off to save build time
# (gzip also links faster than tinyconfig's xz, which helps incremental builds).
DISABLE=(DEBUG_INFO_NONE VT KERNEL_XZ RD_BZIP2 RD_LZMA RD_XZ RD_LZO RD_LZ4 RD_ZSTD)

die() { echo "build-kunit-kernel: $*" >&2; exit 1; }
log() { echo "build-kunit-kernel: $*" >&2; }
run() {
    "$@" >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "'$*' failed; see $LOG"; }
}

recipe_digest() {
    { cat "$SELF"; dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null; } |
        sha256sum | cut -d' ' -f1
}

if [[ -s $DEST/bzImage && -f $DEST/recipe && $(<"$DEST/recipe") == "$(recipe_digest)" ]]; then
    echo "$DEST/bzImage"
    exit 0
fi
[[ ! -s $DEST/bzImage ]] || log "the recipe changed since $DEST/bzImage was built: rebuilding"

missing=()
for pkg in linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev xz-utils; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
        die "could not install ${missing[*]}; install them with apt-get and retry"
fi
[[ -f $TARBALL ]] || die "$TARBALL is missing although linux-source-6.1 is installed"

mkdir -p "$DEST"
: >"$LOG"
if [[ ! -f $SRC/Makefile ]]; then
    log "unpacking $TARBALL into $SRC"
    rm -rf "$SRC.tmp"
    mkdir -p "$SRC.tmp"
    tar -xJf "$TARBALL" -C "$SRC.tmp" --strip-components=1
    mv "$SRC.tmp" "$SRC"
fi

cd "$SRC"
log "configuring (tinyconfig + KUnit)"
run make tinyconfig
args=()
for opt in "${REQUIRED[@]}" "${OPTIONAL[@]}"; do args+=(--enable "$opt"); done
for opt in "${DISABLE[@]}"; do args+=(--disable "$opt"); done
run scripts/config "${args[@]}"
run make olddefconfig

not_y() { for opt; do grep -qx "CONFIG_$opt=y" .config || echo "$opt"; done; }
mapfile -t lost < <(not_y "${OPTIONAL[@]}")
((${#lost[@]} == 0)) || log "optional options not enabled: ${lost[*]}"
mapfile -t lost < <(not_y "${REQUIRED[@]}")
((${#lost[@]} == 0)) || die "required options not =y after olddefconfig: ${lost[*]}"

# Not `make -s`: kbuild rewrites bzImage whenever the verbosity differs from
# the previous build, and a developer's later `make bzImage` should be a no-op.
log "building bzImage with $(nproc) jobs (log: $LOG)"
run make -j"$(nproc)" bzImage
cp arch/x86/boot/bzImage "$DEST/bzImage.tmp"
mv "$DEST/bzImage.tmp" "$DEST/bzImage"
recipe_digest >"$DEST/recipe"
echo "$DEST/bzImage"
