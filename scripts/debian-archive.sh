# Sourced by the scripts that fetch from Debian's registry (vm-test.sh, package-test.sh): the
# mirror is the one this machine's apt already uses, never a host named here. Sets ARCHIVE (a
# URI ending in /debian) and SECURITY (its security archive), without a trailing "/".

# Every URI of this machine's apt sources: deb822 `URIs:` lines and one-line `deb` entries.
apt_uris() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr -s ' \t' '\n'
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] && sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f"
	done
	return 0
}

ARCHIVE=$(apt_uris | grep -E '/debian/?$' | head -n1 || true)
SECURITY=$(apt_uris | grep -E '/debian-security/?$' | head -n1 || true)
if [ -z "$ARCHIVE" ]; then
	echo "no Debian archive (a URI ending in /debian) in this machine's apt sources" >&2
	exit 1
fi
ARCHIVE=${ARCHIVE%/}
SECURITY=${SECURITY:-$ARCHIVE-security}
SECURITY=${SECURITY%/}
