#!/bin/sh
# nixvmd-smoke: the built-in smoke suite: the guest booted, /proc is mounted, disks are seen.
fail() {
	echo "smoke: FAIL: $*"
	exit 1
}
echo "smoke: kernel $(uname -r)"
grep -q '^proc /proc ' /proc/mounts || fail "/proc is not mounted"
[ -r /proc/version ] || fail "/proc/version is not readable"
disks=""
for d in /sys/block/vd*; do
	[ -e "$d" ] || continue
	disks="$disks ${d##*/}($(cat "$d/serial" 2>/dev/null))"
done
[ -n "$disks" ] || fail "no virtio disks in /sys/block"
echo "smoke: disks:$disks"
echo "smoke: ok"
