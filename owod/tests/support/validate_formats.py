#!/usr/bin/env python3
"""Checks records that owod wrote in its `ecs` and `ocsf` formats against the official schemas
(scripts/fetch-schemas.sh fetches them; run this with the Python of its virtualenv).

ECS: every field is an ECS field of the definitions (ecs_flat.json) or under `owo.`, owod's own
namespace; each value has its field's type (a keyword a string, a long an integer, an ip an
address, a date RFC 3339, an array where ECS normalizes to one and only there); `event.kind`,
`event.category`, `event.type` and `event.outcome` take allowed values, and each category's
types are among those it expects; the fields ECS requires are there.

OCSF: each record is valid, under JSON Schema 2020-12, against the schema of its class with the
profiles its `metadata.profiles` names, from the OCSF release its `metadata.version` names
(unknown attributes fail); `type_uid` is `class_uid` * 100 + `activity_id`.

Input: files of JSON lines, or of the bodies a collector kept: an Elasticsearch bulk body's
action lines and a Splunk HEC body's wrapper are taken off. Output: one JSON line, the count of
records checked by owod event type for each format, after the problems found (exit 1 if any)."""
import argparse
import datetime
import ipaddress
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

STRINGS = {"keyword", "constant_keyword", "wildcard", "text", "match_only_text"}
INTEGERS = {"long", "integer", "short", "byte", "unsigned_long"}
NUMBERS = {"float", "double", "scaled_float", "half_float"}
OBJECTS = {"object", "flattened", "nested"}

OCSF_CLASSES = {
    1001: "file_activity",
    1002: "kernel_extension_activity",
    1007: "process_activity",
    2004: "detection_finding",
    4001: "network_activity",
    4003: "dns_activity",
    6002: "application_lifecycle",
    6008: "application_error",
}


def records(path):
    """The records of a file, a collector's bodies unwrapped."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            value = json.loads(line)
            if set(value) == {"create"}:
                continue  # a bulk action line
            if set(value) == {"sourcetype", "event"}:
                value = value["event"]  # a HEC event
            yield n, value


def leaves(value, path=""):
    """(dotted path, value) of every value that is not an object."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, f"{path}.{key}" if path else key)
    else:
        yield path, value


def type_problem(field, value):
    kind = field["type"]
    if isinstance(value, bool):
        return None if kind == "boolean" else f"a boolean, not {kind}"
    if kind in STRINGS:
        return None if isinstance(value, str) else f"{value!r} is not a string ({kind})"
    if kind in INTEGERS:
        return None if isinstance(value, int) else f"{value!r} is not an integer ({kind})"
    if kind in NUMBERS:
        return None if isinstance(value, (int, float)) else f"{value!r} is not a number"
    if kind == "boolean":
        return f"{value!r} is not a boolean"
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
            return None
        except (ValueError, TypeError):
            return f"{value!r} is not an IP address"
    if kind == "date":
        try:
            # Python 3.11 reads at most microseconds; RFC 3339 allows any fraction.
            text = value.replace("Z", "+00:00")
            if "." in text:
                head, tail = text.split(".", 1)
                digits = len(tail) - len(tail.lstrip("0123456789"))
                text = f"{head}.{tail[:min(digits, 6)]}{tail[digits:]}"
            datetime.datetime.fromisoformat(text)
            return None
        except (ValueError, AttributeError):
            return f"{value!r} is not an RFC 3339 date"
    return f"type {kind} is not checked here"


def check_ecs(record, flat):
    problems = []
    for path, value in leaves(record):
        if path.startswith("owo."):
            continue
        field = flat.get(path)
        if field is None:
            parent = path.rsplit(".", 1)[0]
            while parent and parent not in flat and "." in parent:
                parent = parent.rsplit(".", 1)[0]
            if flat.get(parent, {}).get("type") in OBJECTS:
                continue
            problems.append(f"{path}: not an ECS field")
            continue
        array = "array" in field.get("normalize", [])
        if isinstance(value, list) != array:
            problems.append(f"{path}: {'must' if array else 'must not'} be an array")
        for item in value if isinstance(value, list) else [value]:
            problem = type_problem(field, item)
            if problem:
                problems.append(f"{path}: {problem}")
        allowed = field.get("allowed_values")
        if allowed:
            names = {a["name"] for a in allowed}
            for item in value if isinstance(value, list) else [value]:
                if item not in names:
                    problems.append(f"{path}: {item!r} is not an allowed value")
    categories = {a["name"]: a for a in flat["event.category"]["allowed_values"]}
    types = record.get("event", {}).get("type", [])
    for category in record.get("event", {}).get("category", []):
        expected = categories.get(category, {}).get("expected_event_types", [])
        for kind in types:
            if kind not in expected:
                problems.append(f"event.type {kind!r} is not one that category {category!r} expects")
    present = {path for path, _ in leaves(record)}
    for path, field in flat.items():
        if field.get("required") and path not in present:
            problems.append(f"{path}: required, missing")
    return problems


def check_ocsf(record, schemas, validators):
    metadata = record.get("metadata", {})
    version = metadata.get("version")
    name = OCSF_CLASSES.get(record.get("class_uid"))
    if name is None:
        return [f"class_uid {record.get('class_uid')!r} is not one owod writes"]
    profiles = tuple(metadata.get("profiles", []))
    key = (version, name, profiles)
    if key not in validators:
        if version not in schemas:
            schemas[version] = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
        schema = schemas[version].get_class_schema(class_name=name, profiles=list(profiles))
        validators[key] = Draft202012Validator(schema)
    problems = [
        f"{'.'.join(map(str, e.absolute_path)) or '(record)'}: {e.message[:300]}"
        for e in validators[key].iter_errors(record)
    ]
    if record.get("type_uid") != record.get("class_uid", 0) * 100 + record.get("activity_id", 0):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    return problems


def event_type(record, fmt):
    """owod's event type of a record in a format (from event.dataset, or the OCSF class)."""
    if fmt == "ecs":
        return record.get("event", {}).get("dataset", "?").removeprefix("owo.")
    return OCSF_CLASSES.get(record.get("class_uid"), "?")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ecs-flat", required=True, help="ecs_flat.json")
    p.add_argument("--ecs", action="append", default=[], help="a file of ECS records")
    p.add_argument("--ocsf", action="append", default=[], help="a file of OCSF records")
    args = p.parse_args()
    with open(args.ecs_flat, encoding="utf-8") as f:
        flat = json.load(f)
    counts = {"ecs": {}, "ocsf": {}}
    failed = 0
    schemas, validators = {}, {}
    for fmt, paths in (("ecs", args.ecs), ("ocsf", args.ocsf)):
        for path in paths:
            for n, record in records(path):
                if fmt == "ecs":
                    problems = check_ecs(record, flat)
                else:
                    problems = check_ocsf(record, schemas, validators)
                kind = event_type(record, fmt)
                counts[fmt][kind] = counts[fmt].get(kind, 0) + 1
                for problem in problems[:10]:
                    failed += 1
                    print(f"{path}:{n}: {fmt} {kind}: {problem}")
    print(json.dumps(counts, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
