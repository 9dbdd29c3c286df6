#!/usr/bin/env python3
"""Checks answers the live server gave against the schemas of its OpenAPI document.

usage: check_answers.py OPENAPI.json NAME=ANSWER.json ...

Each answer is validated (JSON Schema 2020-12, the OpenAPI 3.1 dialect) against
#/components/schemas/NAME, with undocumented properties refused: every object schema gets
unevaluatedProperties: false unless it is free-form. Exits 1 listing every mismatch.
"""
import copy
import json
import sys

import jsonschema


def strict(node, in_all_of=False):
    """Adds unevaluatedProperties: false to object schemas, except members of an allOf (the
    allOf itself gets it) and allOfs with a free-form member."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "allOf" and isinstance(value, list):
                for member in value:
                    strict(member, in_all_of=True)
            else:
                strict(value)
        free_parts = [
            p for p in node.get("allOf", [])
            if isinstance(p, dict) and p.get("type") == "object" and "properties" not in p
            and "$ref" not in p
        ]
        if not in_all_of and ("properties" in node or "allOf" in node) and not free_parts:
            node.setdefault("unevaluatedProperties", False)
    elif isinstance(node, list):
        for value in node:
            strict(value)


def main():
    doc = json.load(open(sys.argv[1]))
    components = copy.deepcopy(doc["components"])
    strict(components["schemas"])
    failures = []
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        answer = json.load(open(path))
        schema = {"$ref": f"#/components/schemas/{name}", "components": components}
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(answer):
            failures.append(f"{name} ({path}): {error.message} at {list(error.absolute_path)}")
    for f in failures:
        print(f)
    print(f"checked {len(sys.argv) - 2} answers, {len(failures)} mismatches")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
