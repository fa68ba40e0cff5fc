"""The small JSON Schema validator the forwarding tests use (tests/schema_check.py) checks what it claims."""

from __future__ import annotations

import json

import pytest

from forward_schema import SCHEMA_FILE
from tests.schema_check import SchemaError, check_schema, errors

ROOT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "a test schema",
    "type": "object",
    "required": ["kind", "count"],
    "additionalProperties": False,
    "properties": {
        "kind": {"enum": ["a", "b"]},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "version": {"const": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "point": {"$ref": "#/$defs/point"},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "exactly": {"oneOf": [{"type": "number"}, {"type": "integer"}]},
    },
    "$defs": {"point": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}},
                        "additionalProperties": {"type": "string"}}},
}


@pytest.mark.parametrize("instance", [
    {"kind": "a", "count": 1},
    {"kind": "b", "count": -3, "ratio": 2, "flag": False, "note": None, "version": 1, "tags": ["x", "y"],
     "point": {"x": 1.5, "label": "here"}, "either": "text", "exactly": 1.5},
    {"kind": "a", "count": 0, "version": 1.0, "either": 3},
])
def test_it_accepts_what_the_schema_allows(instance):
    assert errors(instance, ROOT_SCHEMA) == []


@pytest.mark.parametrize("instance, expected", [
    ([], "/: array is not object"),
    ({"kind": "a"}, "/: 'count' is missing"),
    ({"kind": "c", "count": 1}, "/kind: 'c' is not one of"),
    ({"kind": "a", "count": True}, "/count: boolean is not integer"),
    ({"kind": "a", "count": 1.5}, "/count: number is not integer"),
    ({"kind": "a", "count": 1, "ratio": "2"}, "/ratio: string is not number"),
    ({"kind": "a", "count": 1, "flag": 0}, "/flag: integer is not boolean"),
    ({"kind": "a", "count": 1, "note": 3}, "/note: integer is not string or null"),
    ({"kind": "a", "count": 1, "version": True}, "/version: True is not 1"),
    ({"kind": "a", "count": 1, "version": 2}, "/version: 2 is not 1"),
    ({"kind": "a", "count": 1, "tags": ["x", 2]}, "/tags/1: integer is not string"),
    ({"kind": "a", "count": 1, "point": {"y": "1"}}, "/point: 'x' is missing"),
    ({"kind": "a", "count": 1, "point": {"x": 1, "label": 2}}, "/point/label: integer is not string"),
    ({"kind": "a", "count": 1, "extra": 1}, "/extra: not allowed here"),
    ({"kind": "a", "count": 1, "either": None}, "/either: matches none of anyOf"),
    ({"kind": "a", "count": 1, "exactly": 2}, "/exactly: matches 2 of oneOf, not exactly one"),
    ({"kind": "a", "count": 1, "exactly": "2"}, "/exactly: matches 0 of oneOf"),
])
def test_it_names_where_and_how_an_instance_breaks_the_schema(instance, expected):
    found = errors(instance, ROOT_SCHEMA)
    assert any(error.startswith(expected) for error in found), found


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^a"},
    {"type": "object", "allOf": []},
    {"$ref": "#/definitions/thing"},
    {"$ref": "https://example.com/schema.json"},
])
def test_a_keyword_it_does_not_check_is_an_error_not_a_pass(schema):
    with pytest.raises(SchemaError):
        errors("a", schema)


def test_the_forwarding_schema_uses_only_what_it_checks():
    check_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    with pytest.raises(SchemaError, match="pattern"):
        check_schema({"$defs": {"a": {"properties": {"b": {"items": {"pattern": "x"}}}}}})
    with pytest.raises(SchemaError, match="unknown"):
        check_schema({"oneOf": [{"$ref": "#/$defs/missing"}]})
