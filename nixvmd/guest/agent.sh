#!/bin/sh
# nixvmd guest agent: runs as /init of the direct backend's initramfs (or as a service in a
# NixOS guest), runs the job the host gave it and reports over a framed channel:
# the virtio-serial port org.nixvmd.agent when the kernel has virtio-console, else the
# serial console. Frames: "@@NIXVMD@@ <nonce> <seq> <event> <argument> @@".
# It never powers the machine off (the host ends the VM once the result is in), unless the
# job says NIXVMD_POWEROFF: a sealed VM with no host listening (nixvmd.distribute).

PATH=/nixvmd/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
export PATH

seq=0
chan=/dev/console
NIXVMD_NONCE=${NIXVMD_NONCE:-0}

send() {
	seq=$((seq + 1))
	event=$1
	shift
	if [ "$chan" = fd3 ]; then
		printf '\n@@NIXVMD@@ %s %s %s %s @@\n' "$NIXVMD_NONCE" "$seq" "$event" "$*" >&3
	else
		printf '\n@@NIXVMD@@ %s %s %s %s @@\n' "$NIXVMD_NONCE" "$seq" "$event" "$*" >"$chan"
	fi
}

early_mounts() {
	[ "$$" = 1 ] || return 0
	if [ -x /bin/busybox ] && [ ! -e /bin/sh.installed ]; then
		/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
		/bin/busybox --install -s
		: >/bin/sh.installed
	fi
	mkdir -p /proc /sys /dev /tmp /run /mnt
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev 2>/dev/null || mknod -m 600 /dev/console c 5 1
	# What udev would add: bash's process substitution (fstests' check -e, -E) needs /dev/fd.
	[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
	for n in 0:stdin 1:stdout 2:stderr; do [ -e "/dev/${n#*:}" ] || ln -s "/proc/self/fd/${n%%:*}" "/dev/${n#*:}"; done
	mount -t tmpfs tmpfs /tmp
	mount -t tmpfs tmpfs /run
	[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	hostname nixvmd-guest 2>/dev/null
}

# Loads, in order, the .ko files each modules.list names: the initramfs' own
# (/nixvmd/modules.list, direct backend) and the run's shared dir's (nix backend: nixvmd
# copies kernel.modules there; names relative to the list). The shared list waits until the
# job is known, so a failure is reported with the run's nonce: call this again after
# read_job; a list is loaded once. A module that will not load is reported (module_error
# with insmod's message) and the function returns 1: the suite must not run.
load_modules() {
	for list in /nixvmd/modules.list "${NIXVMD_SHARED_DIR:-/tmp/shared}/modules.list"; do
		[ -f "$list" ] || continue
		case " $modules_loaded " in *" $list "*) continue ;; esac
		[ "$list" = /nixvmd/modules.list ] || [ "${NIXVMD_NONCE:-0}" != 0 ] || continue
		modules_loaded="$modules_loaded $list"
		while read -r module; do
			[ -n "$module" ] || continue
			case "$module" in /*) ;; *) module=${list%/*}/$module ;; esac
			if ! out=$(insmod "$module" 2>&1); then
				case "$out" in
				*"File exists"*) ;;
				*)
					send module_error "$module: $out"
					return 1
					;;
				esac
			fi
		done <"$list"
	done
}

find_channel() {
	for port in /sys/class/virtio-ports/*; do
		[ -r "$port/name" ] || continue
		if [ "$(cat "$port/name")" = org.nixvmd.agent ]; then
			dev=/dev/${port##*/}
			[ -c "$dev" ] || mknod "$dev" c "$(cut -d: -f1 "$port/dev")" "$(cut -d: -f2 "$port/dev")"
			chan=$dev
			return 0
		fi
	done
	return 1
}

read_job() {
	if [ -f /nixvmd/job.env ]; then
		. /nixvmd/job.env
		return 0
	fi
	# No job baked into the image (nix backend): ask the host for it over the channel.
	[ "$chan" = /dev/console ] && return 1
	# A virtio port opens once: keep this descriptor for the frames (send writes to fd 3).
	exec 3<>"$chan"
	chan=fd3
	printf '\n@@NIXVMD@@ 0 0 hello %s @@\n' "$(uname -r)" >&3
	IFS= read -r line <&3 || return 1
	printf '%s\n' "$line" | base64 -d >/tmp/job.env 2>/dev/null || return 1
	. /tmp/job.env
}

# With image.share_host_root the host's / arrives read-only over virtiofs (tag in
# NIXVMD_HOST_ROOT); an overlay with a tmpfs upper layer makes it writable for the guest
# alone (/etc for test users, /tmp), and the job runs chrooted into it, so host tools work.
# The agent itself stays in the initramfs, keeping its channel.
root=
enter_host_root() {
	[ -n "$NIXVMD_HOST_ROOT" ] || return 0
	mkdir -p /mnt/host /mnt/rw /mnt/root
	if ! out=$(mount -t virtiofs -o ro "$NIXVMD_HOST_ROOT" /mnt/host 2>&1); then
		send error "cannot mount the host root (virtiofs tag $NIXVMD_HOST_ROOT): $out"
		return 1
	fi
	mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
	mkdir -p /mnt/rw/upper /mnt/rw/work
	if ! out=$(mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /mnt/root 2>&1); then
		send error "cannot mount the overlay over the host root: $out"
		return 1
	fi
	for fs in proc sys dev; do
		mount -o rbind "/$fs" "/mnt/root/$fs"
	done
	# /tmp stays the host's (seen through the overlay): a test's files there are visible.
	mount -t tmpfs tmpfs /mnt/root/run
	hostname nixvmd-guest 2>/dev/null
	root=/mnt/root
}

# vm.network = "user" (NIXVMD_NETWORK): the first NIC on QEMU's user-mode network, with
# its fixed addresses (QEMU's defaults: guest 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3).
network_up() {
	[ "$NIXVMD_NETWORK" = user ] || return 0
	ip link set lo up 2>/dev/null
	nic=
	for dev in /sys/class/net/*; do
		[ "${dev##*/}" = lo ] || { nic=${dev##*/}; break; }
	done
	if [ -z "$nic" ]; then
		network_error="no network interface in the guest (is virtio_net in the kernel or its modules?)"
	elif ! out=$({ ip link set "$nic" up && ip addr add 10.0.2.15/24 dev "$nic" &&
		ip route add default via 10.0.2.2; } 2>&1); then
		network_error="cannot bring $nic up: $out"
	fi
	[ -z "$network_error" ] || echo "nixvmd agent: $network_error" >/dev/console
}

# With NIXVMD_SSHD (the host's sshd, seen in the shared root) the job carries its config
# and keys: written into the guest's /run, out of the suite's environment, then sshd is
# started and waited for until it listens; the `ssh` frame says "up" or why not.
start_sshd() {
	[ -n "$NIXVMD_SSHD" ] || return 0
	dir=$root/run/nixvmd-ssh
	mkdir -p "$dir" && chmod 700 "$dir"
	mkdir -p "$root/run/sshd" && chmod 755 "$root/run/sshd"
	(umask 077 && printf '%s\n' "$NIXVMD_SSH_HOST_KEY" >"$dir/ssh_host_ed25519_key")
	printf '%s\n' "$NIXVMD_SSHD_CONFIG" >"$dir/sshd_config"
	printf '%s\n' "$NIXVMD_SSH_AUTHORIZED_KEYS" >"$dir/authorized_keys"
	unset NIXVMD_SSH_HOST_KEY NIXVMD_SSHD_CONFIG NIXVMD_SSH_AUTHORIZED_KEYS
	printf 'nameserver 10.0.2.3\n' >"$root/etc/resolv.conf" 2>/dev/null
	if [ -n "$network_error" ]; then
		send ssh "$network_error"
		return 0
	fi
	if ! chroot "$root" "$NIXVMD_SSHD" -f /run/nixvmd-ssh/sshd_config -E /run/nixvmd-ssh/sshd.log </dev/null >/dev/null 2>&1; then
		send ssh "sshd did not start: $(tail -n 2 "$dir/sshd.log" 2>/dev/null | tr '\n' ' ')"
		return 0
	fi
	# sshd forks before it binds port 22 (0x0016); a LISTEN (0A) socket there means it is up.
	tries=0
	until grep -q ':0016 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do
		tries=$((tries + 1))
		if [ "$tries" -gt 200 ]; then
			send ssh "sshd did not listen on port 22 within 20 s: $(tail -n 2 "$dir/sshd.log" 2>/dev/null | tr '\n' ' ')"
			return 0
		fi
		sleep 0.1
	done
	send ssh up
}

run_job() {
	# The suite's output goes to the serial console, which the host records.
	if [ -n "$root" ]; then
		chroot "$root" /bin/sh -c "$NIXVMD_COMMAND" </dev/null >/dev/console 2>&1
	else
		sh -c "$NIXVMD_COMMAND" </dev/null >/dev/console 2>&1
	fi
}

main() {
	early_mounts
	# A job baked into the image gives the nonce before anything is reported.
	[ -f /nixvmd/job.env ] && . /nixvmd/job.env
	load_modules || {
		send error "stopped: a kernel module did not load"
		exec sleep 2147483647
	}
	find_channel
	read_job || {
		send error "no job: neither /nixvmd/job.env nor a reply on the agent channel"
		exec sleep 2147483647
	}
	# Modules shared at run time (nix backend) wait for the job: their errors need its nonce.
	load_modules || {
		send error "stopped: a kernel module did not load"
		exec sleep 2147483647
	}
	[ -n "$NIXVMD_PRINTK" ] && echo "$NIXVMD_PRINTK" >/proc/sys/kernel/printk
	network_up
	enter_host_root || exec sleep 2147483647
	start_sshd
	send ready "$(uname -r)"
	mkdir -p /tmp/nixvmd
	cd /tmp/nixvmd || exit 1
	send start "$NIXVMD_KIND"
	if [ -n "$NIXVMD_COMMAND" ]; then
		run_job
		status=$?
	else
		status=0
	fi
	sync
	send exit "$status"
	# A VM nobody talks to (a Nix builder's, nixvmd.distribute) ends itself once the result is out.
	if [ -n "$NIXVMD_POWEROFF" ] && [ "$$" = 1 ]; then
		# printk reaches the serial console before the power goes; the tty's buffer may not:
		# the exit frame again through the kernel (same sequence number: counted once).
		printf '<2>@@NIXVMD@@ %s %s exit %s @@\n' "$NIXVMD_NONCE" "$seq" "$status" >/dev/kmsg
		poweroff -f
	fi
	# Halting or powering off is the host's business; keep PID 1 alive until then.
	[ "$$" = 1 ] && exec sleep 2147483647
	exit "$status"
}

main "$@"
