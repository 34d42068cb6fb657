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
#              other's domains), a storage pool "default" (a dir pool) and an
#              isolated network "default" (a bridge in the host's own network
#              namespace, no DHCP, nothing on this machine's network), under an
#              emulated watchdog (hack/watchdog-emulator) that resets the host
#              (kills its QEMU processes and daemons, boots it again with a new
#              boot ID) when the agent stops petting it. It waits until the
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
# arms, resets), boot.log and log/ (the daemons' logs), lib/images (the pool).
# Domains use KVM (type 'kvm') when /dev/kvm opens, else QEMU TCG (type
# 'qemu'): up says which on stderr.
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

build_emulator() {
	mkdir -p "$ROOT/.bin"
	(cd "$REPO" && go build -o "$EMULATOR.new" ./hack/watchdog-emulator) >&2
	mv -f "$EMULATOR.new" "$EMULATOR"
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
	ip link set lo up
	ip link add pkbr0 type bridge
	ip link set pkbr0 up
	virtlogd -d -p /run/libvirt/virtlogd.pid
	exec libvirtd -p /run/libvirt/libvirtd.pid
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
pool_running() { [[ $(virsh -q -c "$(uri "$1")" pool-info default 2>/dev/null) =~ State:\ *running ]]; }
net_active() { [[ $(virsh -q -c "$(uri "$1")" net-info default 2>/dev/null) =~ Active:\ *yes ]]; }

# ensure_host_objects NAME: the default storage pool and network, defined
# once (persistent, autostarted) and active.
ensure_host_objects() {
	local v=(virsh -q -c "$(uri "$1")")
	if ! "${v[@]}" pool-info default >/dev/null 2>&1; then
		"${v[@]}" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
		"${v[@]}" pool-autostart default >/dev/null
	fi
	# (libvirtd may be autostarting it meanwhile)
	pool_running "$1" ||
		"${v[@]}" pool-start default >/dev/null 2>&1 ||
		pool_running "$1" ||
		say "host $1: storage pool default could not be started"
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
	if ! running "$name"; then
		mkdir -p "$dir"
		build_emulator
		# A host whose emulator is gone may have left processes behind.
		[ -f "$dir/mntns" ] && "$EMULATOR" kill --dir "$dir" 2>/dev/null || true
		write_config "$dir"
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
		[ "$i" = 600 ] && die "host $name: libvirtd did not answer within 60s; see $dir/boot.log and $dir/log"
		sleep 0.1
	done
	ensure_host_objects "$name"
	if (exec 3<>/dev/kvm) 2>/dev/null; then
		say "host $name: /dev/kvm opens: domains can use type 'kvm'"
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
