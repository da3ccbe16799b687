#!/usr/bin/env bash
# Runs owod with a config and prints its records as they are written.
# Usage: run-live.sh OWOD CONFIG. Ctrl-C reaches owod, which flushes, detaches and exits.
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
# Follow only what this run writes. tail -F waits for the file if it does not exist yet.
tail -n 0 -F "$out" 2>/dev/null &
tail_pid=$!
trap 'kill "$tail_pid" 2>/dev/null || true' EXIT
"$owod" --config "$config"
