# nixvmd's shard builder (nixvmd/distribute/derivation.py), run by the store's static busybox as
# `busybox sh builder.sh` in the build directory, with nothing from the host: every path it
# uses is an input of the derivation. It boots one shard's VM with the QEMU command line nixvmd
# made (a local run's machine options minus the QMP and agent sockets: the agent's frames go
# to the serial console), keeps what the guest said in $out and fails the build only when the
# machinery broke. A kernel that panics, hangs or fails its tests is a result: the host replays
# $out through the same suite parsers as a local run (nixvmd/distribute/replay.py).
#
# Inputs (the derivation's attributes): kernel, initrd (the base initramfs), job (the shard's
# job archive), storeTrees (trees the guest sees at their store path: the fstests tree),
# rootTrees (trees unpacked over the guest's /: host programs with their libraries), qemuArgs
# (the whole QEMU command, shell-quoted), disks ("file=bytes" each, made sparse here),
# keepDisks (disks whose tar stream is kept in $out), deadline (seconds), nixvmdSeed.
# $out: console.log (also on the build log, live), qemu.log, exit (QEMU's exit status; 137 =
# killed at the deadline), seed,
# <disk>.tar for each of keepDisks that holds one.
set -u

fail() {
	echo "nixvmd builder: $*" >&2
	exit 1
}

"$builder" mkdir -p bin && "$builder" --install -s "$PWD/bin" || fail "cannot install busybox's applets"
PATH=$PWD/bin
export PATH
mkdir -p "$out" || fail "cannot create $out"
printf '%s\n' "$nixvmdSeed" >"$out/seed"

# The guest's initrd: the base initramfs, the job, then each tree as a newc archive of its own
# (the kernel unpacks concatenated archives into one root).
cat "$initrd" "$job" >initrd.cpio || fail "cannot assemble the initrd from $initrd and $job"
for tree in $storeTrees; do
	(cd / && { echo nix && echo nix/store && find "${tree#/}"; } | cpio -o -H newc) >>initrd.cpio 2>>pack.log ||
		fail "cannot pack $tree into the initrd: $(cat pack.log)"
done
for tree in $rootTrees; do
	(cd "$tree" && find . -mindepth 1 | sed 's|^\./||' | cpio -o -H newc) >>initrd.cpio 2>>pack.log ||
		fail "cannot pack $tree into the initrd: $(cat pack.log)"
done

for disk in $disks; do
	truncate -s "${disk#*=}" "${disk%%=*}" || fail "cannot create the disk image ${disk%%=*}"
done

# The console goes to $out and, line by line, to the build log too: whoever follows the build
# (nix-store --realise, nix log) sees the guest live. The status is QEMU's (pipefail).
eval "set -- $qemuArgs"
set -o pipefail
timeout -s KILL "$deadline" "$@" </dev/null 2>"$out/qemu.log" | tee "$out/console.log"
status=$?
set +o pipefail
echo "$status" >"$out/exit"

# A kept disk carries a tar stream from the guest (fstests' results disk): the tar alone is kept,
# not the image's gigabyte of zeros; its first member stays the run's mark (nixvmd-run). A disk
# with no such tar on it (the guest died first) keeps nothing.
for disk in $keepDisks; do
	mkdir -p "kept/$disk" || fail "cannot make kept/$disk"
	if tar -xf "$disk" -C "kept/$disk" 2>/dev/null && [ -f "kept/$disk/nixvmd-run" ]; then
		(cd "kept/$disk" && tar -cf "$out/$disk.tar" nixvmd-run .) || fail "cannot keep the tar on $disk"
	fi
done
if [ "$status" -ne 0 ] && [ "$status" -ne 137 ] && [ ! -s "$out/console.log" ]; then
	fail "QEMU did not start (exit status $status): $(tail -n 3 "$out/qemu.log" | tr '\n' ' ')"
fi
exit 0
