"""A validator for the part of JSON Schema (draft 2020-12) that schemas/zaphook-event.v1.json uses.

The jsonschema package is not a dependency; this covers ``type``, ``required``,
``properties``, ``additionalProperties``, ``enum``, ``const``, ``oneOf``,
``anyOf``, ``items`` and ``$ref`` to ``#/$defs/...``, and ignores only the
annotations (``$schema``, ``$id``, ``title``, ``description``). Any other
keyword is a SchemaError: a schema that says more than this validator checks
must not pass silently.
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$defs"})
CHECKED = frozenset({"type", "required", "properties", "additionalProperties", "enum", "const", "oneOf", "anyOf",
                     "items", "$ref"})


class SchemaError(ValueError):
    """The schema uses something this validator does not check."""


def errors(instance: Any, schema: dict) -> list[str]:
    """Every way ``instance`` breaks ``schema`` ("/data/chat/id: ..."); empty when it is valid."""
    found: list[str] = []
    _check(instance, schema, schema, "", found)
    return found


def check_schema(schema: dict) -> None:
    """Walk every subschema: SchemaError for a keyword this validator does not check or a $ref it cannot follow."""
    def walk(node: Any) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, dict):
            raise SchemaError(f"a schema must be an object or a boolean, got {node!r}")
        unknown = set(node) - ANNOTATIONS - CHECKED
        if unknown:
            raise SchemaError(f"keywords this validator does not check: {sorted(unknown)}")
        if "$ref" in node:
            _resolve(schema, node["$ref"])
        for child in [*node.get("properties", {}).values(), *node.get("$defs", {}).values(),
                      *node.get("oneOf", ()), *node.get("anyOf", ())]:
            walk(child)
        for keyword in ("items", "additionalProperties"):
            if keyword in node:
                walk(node[keyword])
    walk(schema)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    actual = json_type(value)
    return actual == name or (name == "number" and actual == "integer")


def same_json(first: Any, second: Any) -> bool:
    """Equality as JSON means it: true is not 1, and 1 is 1.0."""
    kinds = {json_type(first), json_type(second)}
    if kinds <= {"integer", "number"}:
        return first == second
    if len(kinds) != 1:
        return False
    if isinstance(first, list):
        return len(first) == len(second) and all(same_json(a, b) for a, b in zip(first, second))
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(same_json(first[key], second[key]) for key in first)
    return first == second


def _resolve(root: dict, ref: str) -> dict:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix):] not in root.get("$defs", {}):
        raise SchemaError(f"unsupported or unknown $ref {ref!r}")
    return root["$defs"][ref[len(prefix):]]


def _check(value: Any, schema: Any, root: dict, path: str, found: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        found.append(f"{path or '/'}: not allowed here")
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be an object or a boolean, got {schema!r}")
    unknown = set(schema) - ANNOTATIONS - CHECKED
    if unknown:
        raise SchemaError(f"keywords this validator does not check: {sorted(unknown)}")
    where = path or "/"
    if "$ref" in schema:
        _check(value, _resolve(root, schema["$ref"]), root, path, found)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            found.append(f"{where}: {json_type(value)} is not {' or '.join(names)}")
            return
    if "const" in schema and not same_json(value, schema["const"]):
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and not any(same_json(value, option) for option in schema["enum"]):
        found.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{where}: {name!r} is missing")
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], root, f"{path}/{name}", found)
            elif "additionalProperties" in schema:
                _check(item, schema["additionalProperties"], root, f"{path}/{name}", found)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}/{index}", found)
    for keyword in ("oneOf", "anyOf"):
        if keyword not in schema:
            continue
        results = [errors_under(value, option, root, path) for option in schema[keyword]]
        passing = sum(1 for result in results if not result)
        if keyword == "anyOf" and passing == 0:
            found.append(f"{where}: matches none of anyOf ({_closest(results)})")
        elif keyword == "oneOf" and passing != 1:
            found.append(f"{where}: matches {passing} of oneOf, not exactly one"
                         + (f" ({_closest(results)})" if passing == 0 else ""))


def errors_under(value: Any, schema: Any, root: dict, path: str) -> list[str]:
    found: list[str] = []
    _check(value, schema, root, path, found)
    return found


def _closest(results: list[list[str]]) -> str:
    """The errors of the option that came nearest, to say why nothing matched."""
    return "; ".join(min(results, key=len)[:3])
