#!/usr/bin/env bash
# Installs the Debian packages given as arguments when any is missing, and checks for a Rust
# toolchain new enough for aya (1.87).
set -euo pipefail

missing=()
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
	echo "no Rust toolchain: install Rust 1.87 or newer with rustup (https://rustup.rs)" >&2
	exit 1
fi
# `make lint` needs rustfmt and clippy; a minimal rustup profile has neither.
if command -v rustup >/dev/null 2>&1; then
	for component in rustfmt clippy; do
		rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
	done
fi
