#!/usr/bin/env bash
# hack/guest/build.sh OUTDIR
#
# Builds poolkeeper's test guest: a busybox initramfs (OUTDIR/initrd.gz, a
# gzipped cpio newc archive, made without root) for Debian's kernel, booted
# with a VM's spec.boot (direct kernel boot). Its /init (hack/guest/init)
# loads the kernel's virtio modules and writes boot-stamped records to the
# VM's first disk, which hack/guest/check-disk reads back on the host to tell
# whether two boots ever wrote at once. It prints exactly three lines on
# stdout, the values for spec.boot:
#   KERNEL=OUTDIR/vmlinux-VERSION   (or /boot/vmlinuz-VERSION)
#   INITRD=OUTDIR/initrd.gz
#   CMDLINE=console=ttyS0 quiet
# The kernel is Debian's /boot/vmlinuz-VERSION, decompressed when it can
# boot so (CONFIG_PVH: QEMU then starts the ELF image at its PVH entry, with
# no BIOS boot and no decompression, which under QEMU TCG saves about ten
# seconds of every boot); else the vmlinuz itself.
# It installs linux-image-amd64 and busybox-static when missing (as root).
# Guests need no more than 128 MiB of memory; they boot in about a second with
# KVM, several with QEMU TCG.
set -euo pipefail

say() { echo "guest: $*" >&2; }
die() { say "$*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

ensure_packages() {
	local missing=() p
	for p in linux-image-amd64 busybox-static; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (as root): apt-get install ${missing[*]}"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 ||
		{ apt-get -o DPkg::Lock::Timeout=600 update -q >&2 &&
			apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2; }
}
ensure_packages

# The newest kernel whose modules are installed.
kernel="" version=""
for k in $(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V); do
	v=${k#/boot/vmlinuz-}
	[ -f "/lib/modules/$v/modules.dep" ] && kernel=$k version=$v
done
[ -n "$kernel" ] || die "no /boot/vmlinuz-* with its modules in /lib/modules"
[ -r "$kernel" ] || die "$kernel is not readable"
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox is missing (busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'dynamically linked' && die "$busybox is not static (install busybox-static)"

# extract_vmlinux VMLINUZ OUT: the ELF image inside a bzImage, as the
# kernel's scripts/extract-vmlinux finds it: at the first offset where a
# compressed stream decompresses to an ELF file.
extract_vmlinux() {
	local off magic tool
	for magic in 'xz:\xfd7zXZ\x00' 'gzip:\x1f\x8b\x08' 'zstd:\x28\xb5\x2f\xfd' 'lzma:\x5d\x00\x00\x00'; do
		tool=${magic%%:*}
		command -v "$tool" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "${magic#*:}" "$1" 2>/dev/null | cut -d: -f1 | head -n 5); do
			tail -c +$((off + 1)) "$1" | "$tool" -dc 2>/dev/null >"$2.tmp" || true
			if [ "$(head -c 4 "$2.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				mv -f "$2.tmp" "$2"
				return 0
			fi
		done
	done
	rm -f "$2.tmp"
	return 1
}

if grep -q '^CONFIG_PVH=y' "/boot/config-$version" 2>/dev/null; then
	if [ "$out/vmlinux-$version" -nt "$kernel" ] || extract_vmlinux "$kernel" "$out/vmlinux-$version"; then
		kernel=$out/vmlinux-$version
	else
		say "could not decompress $kernel; booting it as it is (slower under TCG)"
	fi
fi

mods=/lib/modules/$version
# What the guest needs that Debian builds as modules: the virtio disk, and
# the ACPI power button (with evdev, for busybox acpid). Built-in ones are
# skipped (modules.builtin).
wanted=(virtio_blk virtio_pci button evdev)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
install -m 0755 "$here/init" "$root/init"

# Load order: each module after the modules it depends on (modules.dep lists
# a module's dependencies with the ones loaded first last).
declare -A done_=()
order=()
add() { # add PATH (relative to $mods)
	local rel=$1 deps i
	[ -n "${done_[$rel]:-}" ] && return 0
	done_[$rel]=1
	deps=$(awk -F': *' -v m="$rel" '$1 == m { print $2 }' "$mods/modules.dep")
	read -r -a deps <<<"$deps"
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add "${deps[i]}"; done
	order+=("$rel")
}
for m in "${wanted[@]}"; do
	rel=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n) } n == m { print $1; exit }' "$mods/modules.dep")
	if [ -z "$rel" ]; then
		grep -Eq "/$m\.ko$" "$mods/modules.builtin" 2>/dev/null || die "kernel $version has no module $m, built in or not"
		continue
	fi
	add "$rel"
done
: >"$root/modules.order"
for rel in "${order[@]}"; do
	name=$(basename "$rel")
	case $name in
	*.ko) cp "$mods/$rel" "$root/lib/modules/$name" ;;
	*.ko.xz) xz -dc "$mods/$rel" >"$root/lib/modules/${name%.xz}" ;;
	*.ko.gz) gzip -dc "$mods/$rel" >"$root/lib/modules/${name%.gz}" ;;
	*.ko.zst) zstd -qdc "$mods/$rel" >"$root/lib/modules/${name%.zst}" ;;
	*) die "module $rel: unknown compression" ;;
	esac
	echo "${name%.ko*}.ko" >>"$root/modules.order"
done

cpio=(cpio --quiet -o -H newc -R 0:0)
command -v cpio >/dev/null || cpio=("$busybox" cpio -o -H newc)
(cd "$root" && find . | LC_ALL=C sort | "${cpio[@]}") | gzip -9n >"$tmp/initrd.gz"
mv -f "$tmp/initrd.gz" "$out/initrd.gz"
say "kernel $version; modules $(paste -sd' ' "$root/modules.order"); initramfs $(du -h "$out/initrd.gz" | cut -f1)"

echo "KERNEL=$kernel"
echo "INITRD=$out/initrd.gz"
echo "CMDLINE=console=ttyS0 quiet"
