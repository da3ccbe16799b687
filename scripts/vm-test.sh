#!/usr/bin/env bash
# make vm-test: the real owod on a matrix of Debian kernels. For each kernel: fetch its packages
# (never installed: apt-get download + dpkg-deb -x, cached), build a busybox initramfs with owod
# and owo-vmtest, boot it under QEMU with TCG (no KVM needed), keep the console log; then
# `owo-vmtest report` prints the kernel × monitor table and fails if any cell failed.
#
# Environment:
#   VM_KERNELS        labels to run (default: all): 5.10 (Debian 11), 6.1 and 6.12 (Debian 12),
#                     sid (the newest kernel Debian serves)
#   OWO_KERNEL_CACHE  where packages and extracted kernels are kept (~/.cache/owo-kernels)
#   VM_TIMEOUT        seconds one boot may take in all (300; a boot takes 15-40 s)
#
# Versions are resolved through metapackages in the registry, so the matrix follows it. The
# mirror is the one this machine's apt already uses; apt runs on private state directories, so
# the system's apt configuration and lists are never touched.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${OWO_KERNEL_CACHE:-$HOME/.cache/owo-kernels}
OUT=$ROOT/target/vm-test
OWOD=$ROOT/target/release/owod
VMTEST=$ROOT/target/release/owo-vmtest
TIMEOUT=${VM_TIMEOUT:-300}
KERNELS=${VM_KERNELS:-5.10 6.1 6.12 sid}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Small modules without dependencies, in order of preference; the guest loads two.
MODULES=(crc8 crc-itu-t crc7 dummy)

die() {
	echo "vm-test: $*" >&2
	exit 1
}

# Which apt set (suites) and metapackage give a label's kernel.
kernel_spec() {
	case $1 in
	5.10) echo "bullseye linux-image-amd64" ;;
	6.1) echo "bookworm linux-image-amd64" ;;
	6.12) echo "bookworm linux-image-6.12-amd64" ;;
	sid) echo "sid linux-image-amd64" ;;
	*) return 1 ;;
	esac
}

# shellcheck source=scripts/debian-archive.sh
. "$ROOT/scripts/debian-archive.sh"

# apt on the private state of one apt set: its own sources, lists and cache, no dpkg status.
apt_in() {
	local tool=$1 set=$2
	shift 2
	local dir=$CACHE/apt/$set
	"$tool" -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
		-o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o Dir::State::status=/dev/null \
		-o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
		-o APT::Architecture=amd64 -o APT::Sandbox::User=root "$@"
}

# Write an apt set's sources and refresh its lists, once per run. Without the registry, the
# lists of an earlier run still resolve (to what the registry served then).
declare -A UPDATED=()
apt_set_update() {
	local set=$1 dir=$CACHE/apt/$1 opts=""
	[ -n "${UPDATED[$set]:-}" ] && return 0
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	[ -f "$KEYRING" ] && opts="[signed-by=$KEYRING] "
	case $set in
	bullseye | bookworm)
		printf 'deb %s%s %s main\ndeb %s%s %s-security main\n' \
			"$opts" "$ARCHIVE" "$set" "$opts" "$SECURITY" "$set" >"$dir/sources.list"
		;;
	sid) printf 'deb %s%s sid main\n' "$opts" "$ARCHIVE" >"$dir/sources.list" ;;
	esac
	if ! apt_in apt-get "$set" -qq update >"$dir/update.log" 2>&1; then
		ls "$dir/lists/"*Packages* >/dev/null 2>&1 || {
			cat "$dir/update.log" >&2
			return 1
		}
		echo "vm-test: apt update of $set failed; using the lists of an earlier run" >&2
	fi
	UPDATED[$set]=1
}

# The package names of the candidate's Depends, one a line (the first of alternatives).
depends_of() {
	apt_in apt-cache "$1" show --no-all-versions "$2" | sed -n 's/^Depends: //p' | tr ',' '\n' |
		sed -E 's/^[[:space:]]*//; s/[[:space:]|].*//'
}

version_of() {
	apt_in apt-cache "$1" show --no-all-versions "$2" | sed -n 's/^Version: //p' | head -n1
}

# Download a package's candidate into the cache unless it is there; print the file.
fetch_deb() {
	local set=$1 pkg=$2 ver file tmp
	ver=$(version_of "$set" "$pkg")
	[ -n "$ver" ] || {
		echo "vm-test: $pkg is not in $set" >&2
		return 1
	}
	file=$CACHE/debs/${pkg}_${ver//:/%3a}_amd64.deb
	if [ ! -s "$file" ]; then
		echo "vm-test: downloading $pkg $ver" >&2
		tmp=$(mktemp -d "$CACHE/debs/.partial.XXXXXX")
		(cd "$tmp" && apt_in apt-get "$set" -qq download "$pkg=$ver") >&2 || {
			rm -rf "$tmp"
			return 1
		}
		mv "$tmp"/*.deb "$file"
		rmdir "$tmp"
	fi
	echo "$file"
}

# Resolve a metapackage to a kernel release, fetch and extract its packages; print the release.
fetch_kernel() {
	local set=$1 meta=$2 image release pkgs=() deb dir
	image=$(depends_of "$set" "$meta" | grep -E '^linux-image-[0-9]' | head -n1)
	[ -n "$image" ] || {
		echo "vm-test: $meta in $set depends on no linux-image-VERSION" >&2
		return 1
	}
	release=${image#linux-image-}
	# Debian >= 14 splits the image: the kernel in linux-binary-*, the modules in linux-modules-*.
	mapfile -t pkgs < <(depends_of "$set" "$image" | grep -Fx -e "linux-binary-$release" -e "linux-modules-$release" || true)
	[ ${#pkgs[@]} -gt 0 ] || pkgs=("$image")
	dir=$CACHE/kernels/$release
	if [ ! -f "$dir/.complete" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		for pkg in "${pkgs[@]}"; do
			deb=$(fetch_deb "$set" "$pkg") || return 1
			dpkg-deb -x "$deb" "$dir"
		done
		touch "$dir/.complete"
	fi
	echo "$release"
}

# The initramfs of one kernel: busybox, owod and owo-vmtest with their libraries, users, two of
# the kernel's own modules, and /init.
build_initramfs() {
	local release=$1 work=$2 kdir=$CACHE/kernels/$1 root=$2/root moddir="" lib name ko found=0
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,opt,var/log,lib/modules/vmtest}
	cp "$(command -v busybox)" "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	# Without debug info: a smaller initramfs boots faster under TCG.
	strip --strip-debug -o "$root/usr/sbin/owod" "$OWOD"
	strip --strip-debug -o "$root/usr/bin/owo-vmtest" "$VMTEST"
	# The compat-syscall test program: an ia32 program, and a 64-bit one that uses int 0x80.
	cc -O2 -static -m32 -o "$root/usr/bin/owo-ia32" "$ROOT/owod/tests/support/ia32.c"
	cc -O2 -static -o "$root/usr/bin/owo-ia32-int80" "$ROOT/owod/tests/support/ia32.c"
	cc -O2 -static -o "$root/usr/bin/owo-uring" "$ROOT/owod/tests/support/uring.c" -luring
	for lib in $(ldd "$OWOD" "$VMTEST" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
		'vmtest:x:1000:1000:vmtest:/tmp:/bin/sh' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'vmtest:x:1000:' >"$root/etc/group"
	printf '%s\n' 'passwd: files' 'group: files' >"$root/etc/nsswitch.conf"
	install -m 0755 "$ROOT/scripts/vm-test-init.sh" "$root/init"
	mknod "$root/dev/console" c 5 1 2>/dev/null || true

	for dir in "$kdir/lib/modules/$release" "$kdir/usr/lib/modules/$release"; do
		[ -d "$dir/kernel" ] && moddir=$dir
	done
	[ -n "$moddir" ] || {
		echo "vm-test: no modules of $release in $kdir" >&2
		return 1
	}
	for name in "${MODULES[@]}"; do
		ko=$(find "$moddir/kernel" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" | head -n1)
		[ -n "$ko" ] || continue
		case $ko in
		*.xz) xz -dc "$ko" ;;
		*.zst) zstd -qdc "$ko" ;;
		*) cat "$ko" ;;
		esac >"$root/lib/modules/vmtest/$name.ko"
		found=$((found + 1))
		[ $found -lt 2 ] || break
	done

	(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/initrd.gz"
}

# The kernel image of an extracted release: Debian <= 13 in boot/, newer beside the modules.
vmlinuz_of() {
	local kdir=$CACHE/kernels/$1 v
	for v in "$kdir/boot/vmlinuz-$1" "$kdir/usr/lib/modules/$1/vmlinuz"; do
		[ -f "$v" ] && echo "$v" && return 0
	done
	return 1
}

# Copy the files the guest sent between OWO-FILE-BEGIN/END lines out of a console log.
extract_files() {
	local log=$1 work=$2 name
	sed -n 's/^OWO-FILE-BEGIN \([^[:space:]]*\).*/\1/p' "$log" | while read -r name; do
		sed -n "/^OWO-FILE-BEGIN $name/,/^OWO-FILE-END $name/p" "$log" | sed '1d;$d' | tr -d '\r' |
			base64 -d 2>/dev/null | gunzip >"$work/$name" 2>/dev/null ||
			echo "vm-test: $name came back damaged from $log" >&2
	done
}

# Boot a kernel and its initramfs under QEMU/TCG; the console goes to a log, the check lines to
# stdout. A soft lockup panics the guest (with its backtrace on the console) instead of hanging
# until the timeout: a kernel that locks up under owod does not recover.
boot() {
	local vmlinuz=$1 initrd=$2 log=$3 status
	set +e
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
		-nographic -nic none -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 softlockup_panic=1" </dev/null 2>&1 |
		tee "$log" | grep --line-buffered -E '^(VMTEST|owod\.log\|)' | tr -d '\r'
	status=${PIPESTATUS[0]}
	set -e
	[ "$status" -eq 124 ] && echo "vm-test: $label timed out after ${TIMEOUT}s" | tee -a "$log" >&2
	return 0
}

if [ ! -x "$OWOD" ] || [ ! -x "$VMTEST" ]; then
	die "build first: cargo build --release -p owod -p owo-vmtest"
fi
mkdir -p "$CACHE/debs" "$OUT"
runs=()
for label in $KERNELS; do
	work=$OUT/$label
	rm -rf "$work"
	mkdir -p "$work"
	log=$work/console.log
	runs+=("$label=$log")
	if ! read -r set meta < <(kernel_spec "$label"); then
		echo "vm-test: unknown kernel label \`$label\` (known: 5.10 6.1 6.12 sid)" | tee "$log" >&2
		continue
	fi
	echo "== $label: $meta of $set"
	if ! apt_set_update "$set" 2>"$work/fetch.log" || ! release=$(fetch_kernel "$set" "$meta" 2>>"$work/fetch.log"); then
		cat "$work/fetch.log" >&2
		echo "vm-test: could not fetch the kernel of $label (see $work/fetch.log)" | tee "$log" >&2
		continue
	fi
	if ! vmlinuz=$(vmlinuz_of "$release"); then
		echo "vm-test: no vmlinuz in $CACHE/kernels/$release" | tee "$log" >&2
		continue
	fi
	if ! build_initramfs "$release" "$work" 2>"$work/initramfs.log"; then
		cat "$work/initramfs.log" >&2
		echo "vm-test: could not build the initramfs of $release" | tee "$log" >&2
		continue
	fi
	echo "== $label: $release (TCG, at most ${TIMEOUT}s)"
	started=$SECONDS
	# Under emulation a kernel now and then panics while it boots, before any of our code runs:
	# such a boot (no VMTEST-BOOTED line from /init) is tried once more, and said so. Anything
	# after /init started counts as it is.
	for attempt in 1 2; do
		boot "$vmlinuz" "$work/initrd.gz" "$log"
		grep -q '^VMTEST-BOOTED' "$log" && break
		[ $attempt -eq 1 ] || break
		mv "$log" "$work/console-boot$attempt.log"
		echo "vm-test: $label did not reach /init (see $work/console-boot$attempt.log); booting it again" >&2
	done
	extract_files "$log" "$work"
	echo "== $label: $((SECONDS - started))s, console in $log"
done

echo
"$VMTEST" report "${runs[@]}"
