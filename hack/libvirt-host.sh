#!/usr/bin/env bash
# hack/libvirt-host.sh up NAME | down NAME
#
# Simulated hypervisor hosts on this machine, for tests and demos of the
# libvirt driver.
#
#   up NAME    starts host NAME, when it is not running: a libvirt daemon of its
#              own (virtlogd + libvirtd in private mount and network namespaces,
#              with their own /run/libvirt, /var/lib/libvirt, /etc/libvirt,
#              /var/log/libvirt and /var/cache/libvirt, so hosts never see each
#              other's domains), two storage pools (dir pools): "default", the
#              host's local storage in ROOT/NAME/lib/images, and "shared",
#              ROOT/shared/images, one directory for every host of ROOT (the
#              shared storage of a pool: a VM restarted on another host sees
#              its disk's data), and an
#              isolated network "default" (a bridge in the host's own network
#              namespace, no DHCP, nothing on this machine's network), under an
#              emulated watchdog (hack/watchdog-emulator) that resets the host
#              (kills its QEMU processes and daemons, boots it again with a new
#              boot ID) when the agent stops petting it; libvirtd killed
#              or crashed is started again, as systemd would. It waits until the
#              daemon answers and prints exactly two lines on stdout:
#                LIBVIRT_URI=qemu+unix:///system?socket=ROOT/NAME/run/libvirt-sock
#                WATCHDOG=unix:ROOT/NAME/watchdog.sock
#              (the agent's --libvirt-uri and --watchdog). Everything else goes
#              to stderr. Running up again for a running host prints the same
#              lines and keeps the daemon.
#   down NAME  a power cut: SIGKILLs the host's QEMU processes, its daemons and
#              its watchdog emulator. Its disks, pools and domain definitions
#              stay for the next up.
#
# ROOT is $POOLKEEPER_LIBVIRT_ROOT (default /tmp/poolkeeper-libvirt); a host's
# files are in ROOT/NAME: boot_id (the current boot), watchdog.log (boots,
# arms, resets), boot.log and log/ (the daemons' logs), lib/images (the pool
# default); ROOT/shared/images is the pool shared of every host.
# Domains use KVM (type 'kvm') when KVM works, else QEMU TCG (type 'qemu'):
# up says which on stderr. KVM works when /dev/kvm opens and QEMU boots the
# installed Linux kernel with it (tried once per boot of this machine, within
# 15s; some nested KVMs, such as PVM, open but run no stock kernel);
# $POOLKEEPER_LIBVIRT_KVM=yes or no skips the try. Where KVM does not work the
# host's daemons see no /dev/kvm (the host's namespace has a /dev without
# it), so libvirt offers only 'qemu'.
#
# QEMU's image locking is off on simulated hosts: their QEMU processes share
# this machine's kernel, whose file locks would refuse a second QEMU of a VM
# whose disk another host's QEMU holds, where real shared storage may not —
# and hide from the tests the very double start they look for. In each
# host's daemons a wrapper, ROOT/.bin/qemu/qemu-system-x86_64, is first in
# PATH, where libvirt looks for its emulator: it runs
# /usr/bin/qemu-system-x86_64 with "locking":"off" added to every file block
# node.
#
# It installs what it needs from Debian's packages when missing (libvirt,
# QEMU, and a kernel and busybox-static for test guests) and must run as root
# (it works in a container).
set -euo pipefail

ROOT=${POOLKEEPER_LIBVIRT_ROOT:-/tmp/poolkeeper-libvirt}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/hack/libvirt-host.sh"
EMULATOR="$ROOT/.bin/watchdog-emulator"

say() { echo "libvirt-host: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
	echo "usage: $0 up NAME | down NAME" >&2
	exit 2
}

ensure_packages() {
	local missing=() p
	for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils busybox-static \
		linux-image-amd64 iproute2; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 ||
		{ apt-get -o DPkg::Lock::Timeout=600 update -q >&2 &&
			apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2; }
}

# ensure_qemu_account: libvirt's QEMU driver (9.0) refuses to start without
# the user libvirt-qemu and the groups kvm and libvirt-qemu, even when
# qemu.conf runs QEMU as root; they come with libvirt-daemon-system, which
# --no-install-recommends leaves out. Made as that package makes them, only
# when missing.
ensure_qemu_account() {
	local g
	for g in kvm libvirt-qemu; do
		getent group "$g" >/dev/null || groupadd -r "$g"
	done
	if ! getent passwd libvirt-qemu >/dev/null; then
		useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
	fi
}

# kvm_works: whether QEMU runs Linux with KVM here (see the header).
kvm_works() {
	(exec 3<>/dev/kvm) 2>/dev/null || return 1
	case ${POOLKEEPER_LIBVIRT_KVM:-} in
	yes) return 0 ;;
	no) return 1 ;;
	esac
	local cache kernel
	cache=/tmp/poolkeeper-kvm.$(cat /proc/sys/kernel/random/boot_id)
	(
		flock 9
		[ -s "$cache" ] && exit 0
		kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
		# Without a root file system the kernel panics and QEMU exits: in
		# a second or two with a working KVM.
		if [ -n "$kernel" ] && timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 128 -nodefaults -display none \
			-serial stdio -no-reboot -kernel "$kernel" -append "console=ttyS0 panic=-1" 2>/dev/null |
			tr -d '\r' | grep -a -c '^\[.*Linux version' >/dev/null 2>&1; then
			echo yes >"$cache"
		else
			echo no >"$cache"
		fi
	) 9>"$cache.lock"
	[ "$(cat "$cache")" = yes ]
}

QEMU=/usr/bin/qemu-system-x86_64

# write_qemu_wrapper: the emulator of the hosts' daemons, QEMU with image
# locking off (see the header).
write_qemu_wrapper() {
	local new=$ROOT/.bin/qemu/qemu-system-x86_64.new.$$ # (hosts started at once)
	mkdir -p "$ROOT/.bin/qemu"
	{
		echo '#!/bin/bash'
		echo '# QEMU with image locking off, for the simulated hosts of hack/libvirt-host.sh.'
		cat <<-'EOF'
			from='"driver":"file",' to='"driver":"file","locking":"off",' args=()
			for a in "$@"; do args+=("${a//"$from"/"$to"}"); done
		EOF
		echo "exec $QEMU \"\${args[@]}\""
	} >"$new"
	chmod +x "$new"
	# Replaced only when it changed: libvirt probes QEMU again when its
	# emulator's ctime moves.
	if cmp -s "$new" "$ROOT/.bin/qemu/qemu-system-x86_64"; then
		rm -f "$new"
	else
		mv -f "$new" "$ROOT/.bin/qemu/qemu-system-x86_64"
	fi
}

build_emulator() {
	mkdir -p "$ROOT/.bin"
	# (hosts started at once build it once)
	(
		flock 9
		if [ -x "$EMULATOR" ] && [ -z "$(find "$REPO/hack/watchdog-emulator" "$REPO/internal/watchdog" "$REPO/go.mod" \
			"$REPO/go.sum" -newer "$EMULATOR" -print -quit)" ]; then
			exit 0
		fi
		(cd "$REPO" && go build -o "$EMULATOR.new" ./hack/watchdog-emulator) >&2
		mv -f "$EMULATOR.new" "$EMULATOR"
	) 9>"$ROOT/.bin/emulator.lock"
}

# write_config DIR: the daemons' configuration, for root in a container.
write_config() {
	local etc=$1/etc
	mkdir -p "$etc/qemu" "$etc/storage" "$etc/qemu/networks"
	cat >"$etc/libvirtd.conf" <<-'EOF'
		unix_sock_group = "root"
		unix_sock_ro_perms = "0770"
		unix_sock_rw_perms = "0770"
		auth_unix_ro = "none"
		auth_unix_rw = "none"
		log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
	EOF
	cat >"$etc/virtlogd.conf" <<-'EOF'
		log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
	EOF
	cat >"$etc/qemu.conf" <<-'EOF'
		user = "root"
		group = "root"
		dynamic_ownership = 0
		remember_owner = 0
		security_driver = "none"
		cgroup_controllers = [ ]
		namespaces = [ ]
		stdio_handler = "file"
	EOF
	cat >"$etc/libvirt.conf" <<-'EOF'
		uri_default = "qemu:///system"
	EOF
}

# boot NAME: one boot of the host, run by the emulator in fresh mount and
# network namespaces: mount the host's directories and run its daemons.
boot() {
	local dir=$ROOT/$1
	mount --make-rprivate /
	# Runtime state does not survive a reboot.
	rm -rf "$dir/run"
	mkdir -p "$dir/run" "$dir/lib/images" "$dir/log" "$dir/cache" /run/libvirt /var/lib/libvirt /etc/libvirt \
		/var/log/libvirt /var/cache/libvirt
	mount --bind "$dir/run" /run/libvirt
	mount --bind "$dir/lib" /var/lib/libvirt
	mount --bind "$dir/etc" /etc/libvirt
	mount --bind "$dir/log" /var/log/libvirt
	mount --bind "$dir/cache" /var/cache/libvirt
	# A KVM that runs no Linux kernel is not offered (see kvm_works).
	if [ "$(cat "$dir/kvm" 2>/dev/null)" = no ] && [ -e /dev/kvm ]; then
		hide_kvm "$dir"
	fi
	ip link set lo up
	ip link add pkbr0 type bridge
	ip link set pkbr0 up
	virtlogd -d -p /run/libvirt/virtlogd.pid
	# libvirt's emulator is the first qemu-system-x86_64 in PATH: QEMU
	# without image locking (see the header). libvirtd killed, crashed or
	# exiting is started again a second later, as systemd does with a
	# daemon it keeps running; the domains run on meanwhile (QEMU is not its
	# child) and the new daemon finds them again in /run/libvirt/qemu. Only
	# the host's power-off (the emulator kills every process of the boot,
	# this loop too) ends it.
	local status
	while :; do
		status=0
		PATH=$ROOT/.bin/qemu:$PATH libvirtd -p /run/libvirt/libvirtd.pid || status=$?
		echo "$(date -u +%FT%T.%3NZ) libvirtd exited with status $status; starting it again in 1s" >&2
		sleep 1
	done
}

# hide_kvm DIR: a /dev without kvm in this (the host's) mount namespace: a
# tmpfs with every other entry of the machine's /dev bound into it. libvirt
# takes KVM for usable whenever /dev/kvm exists and opens (and then probes
# QEMU again at every domain start when QEMU finds it is not), so it must not
# exist at all.
hide_kvm() {
	local host=$1/hostdev e n
	mkdir -p "$host"
	mount --rbind /dev "$host"
	mount -t tmpfs -o mode=755,nosuid devfs /dev
	for e in "$host"/* "$host"/.[!.]*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		n=${e##*/}
		if [ "$n" = kvm ]; then
			continue
		elif [ "$n" = ptmx ]; then
			ln -s pts/ptmx /dev/ptmx # a bound ptmx finds no devpts beside it
		elif [ -L "$e" ]; then
			cp -a "$e" "/dev/$n"
		elif [ -d "$e" ]; then
			mkdir -p "/dev/$n" && mount --rbind "$e" "/dev/$n"
		else
			: >"/dev/$n" && mount --bind "$e" "/dev/$n"
		fi
	done
	umount -l "$host"
}

uri() { echo "qemu+unix:///system?socket=$ROOT/$1/run/libvirt-sock"; }

running() {
	local pidfile=$ROOT/$1/emulator.pid pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "watchdog-emulator serve --dir $ROOT/$1 "
}

# (virsh's output is read whole: grep -q would close the pipe early, which
# pipefail counts as a failure)
pool_running() { [[ $(virsh -q -c "$(uri "$1")" pool-info "$2" 2>/dev/null) =~ State:\ *running ]]; }
net_active() { [[ $(virsh -q -c "$(uri "$1")" net-info default 2>/dev/null) =~ Active:\ *yes ]]; }

# ensure_pool NAME POOL TARGET: a dir storage pool, defined once
# (persistent, autostarted) and active.
ensure_pool() {
	local v=(virsh -q -c "$(uri "$1")")
	if ! "${v[@]}" pool-info "$2" >/dev/null 2>&1; then
		"${v[@]}" pool-define-as "$2" dir --target "$3" >/dev/null
		"${v[@]}" pool-autostart "$2" >/dev/null
	fi
	# (libvirtd may be autostarting it meanwhile)
	pool_running "$1" "$2" ||
		"${v[@]}" pool-start "$2" >/dev/null 2>&1 ||
		pool_running "$1" "$2" ||
		say "host $1: storage pool $2 could not be started"
}

# ensure_host_objects NAME: the storage pools default (the host's own
# storage) and shared (one directory for every host), and the network
# default.
ensure_host_objects() {
	local v=(virsh -q -c "$(uri "$1")")
	ensure_pool "$1" default /var/lib/libvirt/images
	mkdir -p "$ROOT/shared/images"
	ensure_pool "$1" shared "$ROOT/shared/images"
	# The network's bridge is made by boot in the host's own network
	# namespace; libvirt only attaches domains to it (no firewall, no DHCP).
	if ! net_active "$1"; then
		local xml=$ROOT/$1/network-default.xml
		cat >"$xml" <<-'EOF'
			<network>
			  <name>default</name>
			  <forward mode='bridge'/>
			  <bridge name='pkbr0'/>
			</network>
		EOF
		"${v[@]}" net-undefine default >/dev/null 2>&1 || true
		"${v[@]}" net-define "$xml" >/dev/null
		"${v[@]}" net-autostart default >/dev/null
		"${v[@]}" net-start default >/dev/null 2>&1 ||
			net_active "$1" ||
			say "host $1: network default could not be started: $("${v[@]}" net-start default 2>&1)"
	fi
}

up() {
	local name=$1 dir=$ROOT/$1
	[ "$(id -u)" = 0 ] || die "must run as root"
	ensure_packages
	ensure_qemu_account
	if ! running "$name"; then
		mkdir -p "$dir"
		build_emulator
		write_qemu_wrapper
		# A host whose emulator is gone may have left processes behind.
		if [ -f "$dir/mntns" ]; then "$EMULATOR" kill --dir "$dir" 2>/dev/null || true; fi
		write_config "$dir"
		if kvm_works; then echo yes >"$dir/kvm"; else echo no >"$dir/kvm"; fi
		setsid "$EMULATOR" serve --dir "$dir" --socket "$dir/watchdog.sock" --log "$dir/watchdog.log" \
			-- /bin/bash "$SELF" _boot "$name" </dev/null >>"$dir/emulator.log" 2>&1 &
		echo $! >"$dir/emulator.pid"
		say "host $name: starting (logs in $dir)"
	fi
	local i
	for i in $(seq 1 600); do
		if "$EMULATOR" ctl --socket "$dir/watchdog.sock" BOOT >/dev/null 2>&1 &&
			virsh -q -c "$(uri "$name")" version >/dev/null 2>&1; then
			break
		fi
		running "$name" || die "host $name: the emulator exited; see $dir/emulator.log and $dir/boot.log"
		[ "$i" = 600 ] && die "host $name: libvirtd did not answer within 60s; see $dir/boot.log and $dir/log;" \
			"its last errors: $(grep -s ' error : ' "$dir/log/libvirtd.log" | tail -n 3)"
		sleep 0.1
	done
	ensure_host_objects "$name"
	if [ "$(cat "$dir/kvm" 2>/dev/null)" = yes ]; then
		say "host $name: KVM works: domains can use type 'kvm'"
	elif [ -e /dev/kvm ]; then
		say "host $name: /dev/kvm is there but QEMU boots no Linux kernel with it: domains use type 'qemu' (TCG)"
	else
		say "host $name: no usable /dev/kvm: domains must use type 'qemu' (TCG)"
	fi
	say "host $name: boot $(cat "$dir/boot_id")"
	echo "LIBVIRT_URI=$(uri "$name")"
	echo "WATCHDOG=unix:$dir/watchdog.sock"
}

down() {
	local name=$1 dir=$ROOT/$1 pid
	[ -d "$dir" ] || { say "host $name: not known"; return 0; }
	if running "$name"; then
		# The emulator powers the host off and reaps it; one that does not
		# (hung, stopped) is killed, and its host with it below.
		pid=$(cat "$dir/emulator.pid")
		kill -TERM "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 50); do
			[ -d "/proc/$pid" ] || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/emulator.pid"
	if [ -x "$EMULATOR" ]; then
		"$EMULATOR" kill --dir "$dir"
	fi
	rm -f "$dir/watchdog.sock" "$dir/run/libvirt-sock" "$dir/run/libvirt-sock-ro" "$dir/run/libvirt-admin-sock"
	say "host $name: down"
}

[ $# -eq 2 ] || usage
case $2 in
"" | *[!A-Za-z0-9_.-]*) die "bad host name '$2'" ;;
esac
case $1 in
up) up "$2" ;;
down) down "$2" ;;
_boot) boot "$2" ;;
*) usage ;;
esac
