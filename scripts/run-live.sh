#!/usr/bin/env bash
# Runs owod with a config and shows its records as they happen, one readable line each
# (`owoctl watch`, over a D-Bus bus of this run's own, so nothing needs installing).
# Usage: run-live.sh OWOD CONFIG (owoctl is taken from beside OWOD). Ctrl-C stops owod, which
# flushes, detaches and exits; the records it writes while stopping (`stop` last) still show.
set -euo pipefail
owod=$1
config=$2
owoctl=$(dirname "$owod")/owoctl

if [ "$(id -u)" -ne 0 ]; then
	echo "owod loads eBPF programs and needs root: sudo make run" >&2
	exit 1
fi
"$owod" --config "$config" --check-config >&2

dir=$(mktemp -d)
bus="unix:path=$dir/bus"
dbus-daemon --session --nofork --nopidfile --address="$bus" &
bus_pid=$!
cleanup() {
	kill "$bus_pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
"$owod" --config "$config" --dbus-address "$bus" &
owod_pid=$!
trap 'kill -INT "$owod_pid" 2>/dev/null || true' INT TERM
# The view can start once owod owns its name on the bus.
until "$owoctl" --dbus-address "$bus" monitors >/dev/null 2>&1; do
	if ! kill -0 "$owod_pid" 2>/dev/null; then
		wait "$owod_pid" || exit $?
		exit 1
	fi
	sleep 0.2
done
# The view ignores Ctrl-C and ends by itself when owod closes its socket, after `stop`.
(trap '' INT; exec "$owoctl" --dbus-address "$bus" watch) &
watch_pid=$!
status=0
while kill -0 "$owod_pid" 2>/dev/null; do
	# A trapped Ctrl-C interrupts wait; the last wait returns owod's own exit status.
	if wait "$owod_pid"; then status=0; else status=$?; fi
done
wait "$watch_pid" || true
exit "$status"
