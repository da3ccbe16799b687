#!/usr/bin/env bash
# Fetches the official schemas that the format tests check owod's `ecs` and `ocsf` records
# against, into DIR (default target/schemas), once:
#   ecs_flat.json  the ECS field definitions, from Elastic's npm package @elastic/ecs;
#   venv/          a Python virtualenv with the OCSF schema (PyPI: ocsf-json-schema, every OCSF
#                  release as JSON) and the jsonschema validator.
# Versions are pinned: a new ECS or OCSF release is taken on purpose, with the formats' code.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/schemas}
ecs_package=@elastic/ecs@8.11.5
python_packages=(ocsf-json-schema==1.2.0 jsonschema==4.26.0)
mkdir -p "$dir"

if [ ! -s "$dir/ecs_flat.json" ]; then
	command -v npm >/dev/null 2>&1 || scripts/install-deps.sh npm
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "$ecs_package" >/dev/null && tar xzf ./*.tgz)
	node -e 'process.stdout.write(JSON.stringify(require(process.argv[1]).EcsFlat))' \
		"$tmp/package/build/commonjs/ecs_flat.js" >"$dir/ecs_flat.json.new"
	mv "$dir/ecs_flat.json.new" "$dir/ecs_flat.json"
fi

if ! "$dir/venv/bin/python" -c 'import ocsf_json_schema, jsonschema' 2>/dev/null; then
	rm -rf "$dir/venv"
	# Debian's python3 makes virtualenvs only with python3-venv.
	python3 -m venv "$dir/venv" 2>/dev/null || {
		rm -rf "$dir/venv"
		scripts/install-deps.sh python3-venv
		python3 -m venv "$dir/venv"
	}
	"$dir/venv/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
