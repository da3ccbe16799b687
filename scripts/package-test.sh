#!/usr/bin/env bash
# make package-test: the Debian package `make deb` built, and `make install`, as a host gets them.
#   1. the package holds exactly the files a host needs, its unit names the installed binary,
#      its conffiles are the files under /etc, and it depends on libc and dbus;
#   2. lintian finds no error in it;
#   3. `make install` into a scratch root puts every file there and keeps a config already
#      there; `make uninstall` takes back what it put there and nothing else;
#   4. in a throwaway Debian root (mmdebstrap, this machine's release, from its apt mirror) the
#      package installs, owod runs and checks the installed config, the unit is enabled; removing
#      it keeps the admin's changed config and takes the rest; purging takes the config too.
# Needs root (mmdebstrap into a directory, chroot).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then
	[ "${OWO_REQUIRE_BPF:-}" != 1 ] || { echo "package-test: FAIL: needs root" >&2; exit 1; }
	echo "package-test: skipped: it needs root (a throwaway root, chroot)"
	exit 0
fi
scripts/install-deps.sh lintian mmdebstrap
make -s deb >/dev/null
WORK=$(mktemp -d /tmp/owo-package-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

fail() {
	echo "package-test: FAIL: $*" >&2
	exit 1
}
ok() { echo "package-test: ok: $*"; }

debs=(target/deb/owo_*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "expected one package in target/deb/ (run make deb): ${debs[*]}"
DEB=${debs[0]}

# 1. Contents.
expected="./etc/logrotate.d/owo
./etc/owo/config.yaml
./usr/bin/owoctl
./usr/lib/systemd/system/owod.service
./usr/sbin/owod
./usr/share/bash-completion/completions/owoctl
./usr/share/dbus-1/system.d/org.owo.Observer1.conf
./usr/share/doc/owo/changelog.Debian.gz
./usr/share/doc/owo/copyright
./usr/share/fish/vendor_completions.d/owoctl.fish
./usr/share/lintian/overrides/owo
./usr/share/man/man5/owo.yaml.5.gz
./usr/share/man/man7/owo-migrating.7.gz
./usr/share/man/man7/owo-records.7.gz
./usr/share/man/man8/owoctl.8.gz
./usr/share/man/man8/owod.8.gz
./usr/share/zsh/vendor-completions/_owoctl"
got=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { print $6 }' | sort)
diff -u <(echo "$expected") <(echo "$got") || fail "the package's files differ from the list above"
dpkg-deb -x "$DEB" "$WORK/x"
grep -qx 'ExecStart=/usr/sbin/owod --config /etc/owo/config.yaml' "$WORK/x/usr/lib/systemd/system/owod.service" ||
	fail "the unit does not start /usr/sbin/owod"
cmp -s config.yaml "$WORK/x/etc/owo/config.yaml" || fail "the packaged config is not the shipped config.yaml"
[ "$(dpkg-deb -f "$DEB" Package)" = owo ] || fail "the package is not named owo"
conffiles=$(dpkg-deb -I "$DEB" conffiles)
[ "$conffiles" = "$(printf '/etc/logrotate.d/owo\n/etc/owo/config.yaml')" ] || fail "conffiles: $conffiles"
depends=$(dpkg-deb -f "$DEB" Depends)
case $depends in *libc6*dbus*) ;; *) fail "Depends lacks libc6 or dbus: $depends" ;; esac
ok "contents of $(basename "$DEB") (Depends: $depends)"

# 2. lintian.
lintian --fail-on error --tag-display-limit 0 "$DEB" || fail "lintian found errors"
ok "lintian: no error"

# 3. make install and make uninstall, into a scratch root that already holds a changed config
#    and a file of someone else's in a directory make install uses.
dest=$WORK/dest
mkdir -p "$dest/usr/local/bin"
echo other >"$dest/usr/local/bin/not-ours"
make -s install DESTDIR="$dest" >/dev/null
for f in usr/local/sbin/owod usr/local/bin/owoctl usr/local/lib/systemd/system/owod.service \
	etc/dbus-1/system.d/org.owo.Observer1.conf etc/logrotate.d/owo \
	etc/owo/config.yaml usr/local/share/man/man7/owo-records.7 \
	usr/local/share/bash-completion/completions/owoctl; do
	[ -f "$dest/$f" ] || fail "make install did not install /$f"
done
grep -qx 'ExecStart=/usr/local/sbin/owod --config /etc/owo/config.yaml' \
	"$dest/usr/local/lib/systemd/system/owod.service" || fail "make install's unit does not name its owod"
make -s uninstall DESTDIR="$dest" >/dev/null
left=$(cd "$dest" && find . -type f | sort)
[ "$left" = ./usr/local/bin/not-ours ] || fail "make uninstall left or took: $left"
mkdir -p "$dest/etc/owo"
echo "# the admin's" >"$dest/etc/owo/config.yaml"
make -s install DESTDIR="$dest" >/dev/null
grep -qx "# the admin's" "$dest/etc/owo/config.yaml" || fail "make install overwrote a config"
make -s uninstall DESTDIR="$dest" >/dev/null
left=$(cd "$dest" && find . -type f | sort)
[ "$left" = "$(printf './etc/owo/config.yaml\n./usr/local/bin/not-ours')" ] ||
	fail "make uninstall with a changed config left or took: $left"
ok "make install and make uninstall (DESTDIR, PREFIX=/usr/local)"

# 4. A throwaway root of this machine's release.
# shellcheck source=scripts/debian-archive.sh
. "$ROOT/scripts/debian-archive.sh"
. /etc/os-release
root=$WORK/root
mmdebstrap --quiet --variant=apt --include=dbus,procps,init-system-helpers \
	"$VERSION_CODENAME" "$root" "deb $ARCHIVE $VERSION_CODENAME main" >"$WORK/mmdebstrap.log" 2>&1 ||
	{ cat "$WORK/mmdebstrap.log" >&2; fail "mmdebstrap could not make a root"; }
cp "$DEB" "$root/tmp/owo.deb"
in_root() { chroot "$root" "$@"; }
in_root dpkg -i /tmp/owo.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i"; }
in_root owod --version | grep -q '^owod ' || fail "owod --version in the root"
check=$(in_root owod --check-config) || fail "owod --check-config in the root: $check"
[ "$check" = "/etc/owo/config.yaml: ok; records go to /var/log/edr/alerts.jsonl" ] || fail "check-config: $check"
in_root owoctl --help >/dev/null || fail "owoctl --help in the root"
[ -L "$root/etc/systemd/system/multi-user.target.wants/owod.service" ] || fail "the unit is not enabled"
ok "installed in a $VERSION_CODENAME root: owod runs, the config checks, the unit is enabled"

echo "# the admin's change" >>"$root/etc/owo/config.yaml"
# Installed again over itself, as an upgrade is: the changed config stays, the unit enabled.
in_root dpkg -i /tmp/owo.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i again"; }
grep -q "the admin's change" "$root/etc/owo/config.yaml" || fail "an upgrade replaced the changed config"
[ -L "$root/etc/systemd/system/multi-user.target.wants/owod.service" ] || fail "an upgrade disabled the unit"
ok "upgraded in place: the changed config stays, the unit stays enabled"

in_root dpkg -r owo >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -r"; }
for f in usr/sbin/owod usr/bin/owoctl usr/lib/systemd/system/owod.service usr/share/man/man8/owod.8.gz; do
	[ ! -e "$root/$f" ] || fail "dpkg -r left /$f"
done
grep -q "the admin's change" "$root/etc/owo/config.yaml" || fail "dpkg -r did not keep the changed config"
ok "removed: the binaries are gone, the changed config stays"

# A new install after a remove enables the unit again.
in_root dpkg -i /tmp/owo.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i after -r"; }
[ -L "$root/etc/systemd/system/multi-user.target.wants/owod.service" ] &&
	[ ! -L "$root/etc/systemd/system/owod.service" ] || fail "installed after a remove: the unit is not enabled, or masked"
ok "installed again after the remove: the unit is enabled, not masked"

in_root dpkg -P owo >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -P"; }
[ ! -e "$root/etc/owo" ] || fail "dpkg -P left /etc/owo: $(ls -A "$root/etc/owo")"
[ ! -e "$root/etc/logrotate.d/owo" ] || fail "dpkg -P left /etc/logrotate.d/owo"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/owod.service" ] || fail "dpkg -P left the unit enabled"
ok "purged: the config and the unit's enablement are gone"
echo "package-test: PASS"
