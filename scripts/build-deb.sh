#!/usr/bin/env bash
# make deb: a Debian package of this tree, from the release binaries, in target/deb/. The files
# are laid out by `make install` (PREFIX=/usr) into a staging root; man pages are compressed and
# the binaries stripped as Debian policy asks; the dependencies on shared libraries come from
# dpkg-shlibdeps. The maintainer scripts, control file and copyright are in packaging/deb/.
#
# Environment: DEB_MAINTAINER (default: the author of the last commit).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/deb
STAGE=$OUT/root
MAINTAINER=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>')}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)-1
ARCH=$(dpkg --print-architecture)
DEB=$OUT/owo_${VERSION}_${ARCH}.deb

rm -rf "$STAGE" "$OUT"/owo_*.deb
mkdir -p "$STAGE/DEBIAN"
make -s install DESTDIR="$STAGE" PREFIX=/usr >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE/usr/sbin/owod" "$STAGE/usr/bin/owoctl"
gzip -9n "$STAGE"/usr/share/man/man*/*
doc=$STAGE/usr/share/doc/owo
install -d "$doc"
install -m 0644 packaging/deb/copyright "$doc/copyright"
install -D -m 0644 packaging/deb/lintian-overrides "$STAGE/usr/share/lintian/overrides/owo"
# The changelog's date is the commit's.
when=$(git log -1 --format=%aD)
printf 'owo (%s) unstable; urgency=medium\n\n  * Built from the OWO source tree (make deb).\n\n -- %s  %s\n' \
	"$VERSION" "$MAINTAINER" "$when" | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Shared-library dependencies, as dpkg-shlibdeps finds them (it wants a debian/control).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/debian"
printf 'Source: owo\n\nPackage: owo\nArchitecture: any\n' >"$scratch/debian/control"
depends=$(cd "$scratch" && dpkg-shlibdeps -O "$STAGE/usr/sbin/owod" "$STAGE/usr/bin/owoctl" 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -k -s --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|; s|@ARCH@|$ARCH|; s|@SIZE@|$size|; s|@DEPENDS@|$depends|; s|@MAINTAINER@|$MAINTAINER|" \
	packaging/deb/control >"$STAGE/DEBIAN/control"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$STAGE/DEBIAN/"
# Files under /etc are the admin's: dpkg keeps them on remove, asks before replacing a changed
# one, and deletes them on purge.
(cd "$STAGE" && find etc -type f | sed 's|^|/|' | sort) >"$STAGE/DEBIAN/conffiles"
(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
