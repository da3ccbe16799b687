#!/usr/bin/env bash
# Runs owod with a config and prints its records as they are written.
# Usage: run-live.sh OWOD CONFIG. Ctrl-C stops owod, which flushes, detaches and exits; the
# records it writes while stopping (the `stop` record last) are still shown.
set -euo pipefail
owod=$1
config=$2

if [ "$(id -u)" -ne 0 ]; then
	echo "owod loads eBPF programs and needs root: sudo make run" >&2
	exit 1
fi
summary=$("$owod" --config "$config" --check-config)
echo "$summary" >&2
out=${summary##*records go to }
if [ "$out" = "$summary" ]; then
	# No file sink: whatever the config shows on stderr is all there is.
	exec "$owod" --config "$config"
fi

# Show only what this run writes: start after the file's current end.
offset=$(( $(stat -c %s "$out" 2>/dev/null || echo 0) + 1 ))
"$owod" --config "$config" &
owod_pid=$!
# tail ignores Ctrl-C and ends by itself once owod has exited and it has read the rest.
(trap '' INT; exec tail -c "+$offset" -F --pid="$owod_pid" "$out" 2>/dev/null) &
tail_pid=$!
trap 'kill -INT "$owod_pid" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$owod_pid" 2>/dev/null; do
	# A trapped Ctrl-C interrupts wait; the last wait returns owod's own exit status.
	if wait "$owod_pid"; then status=0; else status=$?; fi
done
wait "$tail_pid" || true
exit "$status"
