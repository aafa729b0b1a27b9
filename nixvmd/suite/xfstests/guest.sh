#!/bin/sh
# nixvmd's fstests runner, run by the agent as the job's command (POSIX sh; with
# image.share_host_root it runs in the host's root, so host tools are at hand).
# It finds the test, scratch and results disks by their virtio serial (no udev: never
# by vdX order), writes local.config, makes the test file system, runs `check -R xunit`,
# then writes RESULT_BASE as a tar stream onto the results disk, which the host reads
# from the disk image once QEMU is gone. The first file of the stream is nixvmd-run,
# holding this run's token, so a results disk left over from an earlier run is refused.

say() { echo "nixvmd-xfstests: $*"; }

disk_by_serial() {
	for block in /sys/block/vd*; do
		[ -r "$block/serial" ] || continue
		if [ "$(cat "$block/serial")" = "$1" ]; then
			echo "/dev/${block##*/}"
			return 0
		fi
	done
	say "no disk with serial $1 (disks: $(cat /sys/block/vd*/serial 2>/dev/null | tr '\n' ' '))" >&2
	return 1
}

add_fstests_users() {
	# fstests wants these users; the overlay over the host root makes /etc writable.
	grep -q '^fsgqa:' /etc/passwd 2>/dev/null && return 0
	[ -w /etc/passwd ] || return 0
	echo 'fsgqa:x:31415:31415:fstests:/home/fsgqa:/bin/sh' >>/etc/passwd
	echo 'fsgqa2:x:31416:31416:fstests:/home/fsgqa2:/bin/sh' >>/etc/passwd
	echo '123456-fsgqa:x:31417:31417:fstests:/home/123456-fsgqa:/bin/sh' >>/etc/passwd
	echo 'fsgqa:x:31415:' >>/etc/group
	echo 'fsgqa2:x:31416:' >>/etc/group
	echo '123456-fsgqa:x:31417:' >>/etc/group
}

make_test_fs() {
	case "$NIXVMD_XFS_FSTYP" in
	xfs | btrfs | f2fs) force=-f ;;
	ext2 | ext3 | ext4) force=-F ;;
	*) force= ;;
	esac
	say "mkfs.$NIXVMD_XFS_FSTYP $force $NIXVMD_XFS_MKFS_OPTIONS $1"
	# shellcheck disable=SC2086 # the options are a word list by design
	if ! "mkfs.$NIXVMD_XFS_FSTYP" $force $NIXVMD_XFS_MKFS_OPTIONS "$1" >/tmp/nixvmd-mkfs.log 2>&1; then
		cat /tmp/nixvmd-mkfs.log
		say "mkfs of the test device $1 failed"
		return 1
	fi
}

# xfstests.dev_tree: the user's fstests tree, shared read-only by the host with the tag in
# NIXVMD_XFS_DEV_TREE over virtiofs or 9p (whichever the host chose: the other one finds no
# such tag), mounted over NIXVMD_XFS_DIR, so check runs the tree as it is on the host now.
mount_dev_tree() {
	[ -n "$NIXVMD_XFS_DEV_TREE" ] || return 0
	mkdir -p "$NIXVMD_XFS_DIR" 2>/dev/null
	if out=$(mount -t virtiofs -o ro "$NIXVMD_XFS_DEV_TREE" "$NIXVMD_XFS_DIR" 2>&1) ||
		out9=$(mount -t 9p -o ro,trans=virtio,version=9p2000.L "$NIXVMD_XFS_DEV_TREE" "$NIXVMD_XFS_DIR" 2>&1); then
		say "fstests tree $NIXVMD_XFS_DEV_TREE (xfstests.dev_tree) mounted at $NIXVMD_XFS_DIR"
		return 0
	fi
	say "cannot mount the fstests tree $NIXVMD_XFS_DEV_TREE (xfstests.dev_tree) at $NIXVMD_XFS_DIR: virtiofs: $out; 9p: $out9"
	return 1
}

save_results() {
	echo "$NIXVMD_XFS_TOKEN" >"$NIXVMD_XFS_RESULT_BASE/nixvmd-run"
	if tar -cf "$1" -C "$NIXVMD_XFS_RESULT_BASE" nixvmd-run . 2>/tmp/nixvmd-tar.log; then
		say "results saved to $1"
	else
		cat /tmp/nixvmd-tar.log
		say "could not save the results to $1"
	fi
	sync
}

main() {
	test_dev=$(disk_by_serial "$NIXVMD_XFS_TEST_SERIAL") || exit 2
	scratch_dev=$(disk_by_serial "$NIXVMD_XFS_SCRATCH_SERIAL") || exit 2
	results_dev=$(disk_by_serial "$NIXVMD_XFS_RESULTS_SERIAL") || exit 2
	say "test $test_dev scratch $scratch_dev results $results_dev"
	dd if=/dev/zero of="$results_dev" bs=64k count=16 2>/dev/null
	rm -rf /tmp/nixvmd-xfstests
	mkdir -p /tmp/nixvmd-xfstests "$NIXVMD_XFS_TEST_DIR" "$NIXVMD_XFS_SCRATCH_MNT" "$NIXVMD_XFS_RESULT_BASE"
	HOST_OPTIONS=/tmp/nixvmd-xfstests/local.config
	export HOST_OPTIONS
	printf '%s\n' "$NIXVMD_XFS_LOCAL_CONFIG" |
		sed -e "s|@TEST_DEV@|$test_dev|g" -e "s|@SCRATCH_DEV@|$scratch_dev|g" >"$HOST_OPTIONS"
	add_fstests_users
	make_test_fs "$test_dev" || exit 2
	mount_dev_tree || exit 2
	cd "$NIXVMD_XFS_DIR" || {
		say "no fstests at $NIXVMD_XFS_DIR (xfstests.dir)"
		exit 2
	}
	[ -x ./check ] || {
		say "$NIXVMD_XFS_DIR/check is missing or not executable (xfstests.dir)"
		exit 2
	}
	eval "set -- $NIXVMD_XFS_ARGS"
	say "./check $*"
	./check "$@"
	status=$?
	save_results "$results_dev"
	exit "$status"
}

main
