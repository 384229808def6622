"""Validation of custom resources against the committed CRDs, the way an API server does it.

``validate(plural, body)`` reads the CRD YAML in ``crds/`` (each file once) and returns one
readable error per problem, such as ``spec.replicaSets[0].cards.milli: 1500 is greater than
the maximum of 1000``; an empty list means the API server would accept the object. Tests use
it, and so does the Kubernetes API emulator, for creates, updates and status writes alike
(a status write sends the whole object).

What it does, in the API server's order, on a copy of ``body``:

1. drops ``null`` values of fields (the server prunes a null unless the field is nullable);
2. applies the schema's defaults, nested ones included (the server does, before validating);
3. checks the structural schema with jsonschema: types, enums, bounds, patterns, required
   fields, item counts, ``date-time`` formats, and unknown fields. The server prunes unknown
   fields silently, or rejects them under ``kubectl``'s default strict field validation: both
   lose data, so each is reported. Anything goes under ``x-kubernetes-preserve-unknown-fields``
   and under ``metadata`` (only ``metadata.name`` is checked, as a DNS subdomain);
4. checks list-type ``map`` keys and ``set`` items are unique;
5. evaluates the CEL rules (``x-kubernetes-validations``) with cel-python, which provides the
   Kubernetes list extension ``sum()`` here, on every node whose subtree passed step 3. A rule
   that fails to evaluate is an error, as on the server. CEL's ``oldSelf`` (transition rules)
   is not supported: no rule of ours uses it.

``structural_problems(root)`` says why a schema is not *structural* (the Kubernetes rules:
a type on every node, no ``$ref`` or junctors, no ``additionalProperties`` beside
``properties``, list-map keys required or defaulted, ...), so a CRD can be checked before use.
"""

from __future__ import annotations

import copy
import datetime
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes

CRDS = Path(__file__).resolve().parents[2] / "crds"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JSON_SCHEMA_KEYS = (
    "type",
    "enum",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
)
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        # RFC 3339 needs a zone and a "T"; fromisoformat alone accepts less.
        if not re.match(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$", value):
            raise ValueError(f"{value!r} is not an RFC 3339 date-time")
        datetime.datetime.fromisoformat(value.replace("z", "Z"))
    return True


@functools.cache
def _definitions() -> dict[str, dict[str, Any]]:
    """Every CRD committed in ``crds/``, by plural."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                found[doc["spec"]["names"]["plural"]] = doc
    return found


@functools.cache
def _validator(plural: str) -> tuple[dict[str, Any], jsonschema.protocols.Validator, str, str]:
    crd = _definitions()[plural]
    (version,) = (v for v in crd["spec"]["versions"] if v.get("storage"))
    root = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    for field in ("apiVersion", "kind"):
        root.setdefault("properties", {}).setdefault(field, {"type": "string"})
    root["properties"].setdefault("metadata", {"type": "object"})
    strict = _strict(root)
    jsonschema.Draft202012Validator.check_schema(strict)
    validator = jsonschema.Draft202012Validator(strict, format_checker=_FORMATS)
    api_version = f"{crd['spec']['group']}/{version['name']}"
    return root, validator, api_version, crd["spec"]["names"]["kind"]


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a structural node, refusing the fields the structural schema does not name."""
    out = {key: node[key] for key in _JSON_SCHEMA_KEYS if key in node}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {name: _strict(sub) for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = _strict(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(node["additionalProperties"])
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def validate(plural: str, body: dict[str, Any]) -> list[str]:
    """Errors the API server would report for ``body`` as a ``plural`` object; empty when valid.

    Raises ``KeyError`` for a plural with no CRD in ``crds/`` (a core kind, or a typo).
    """
    if plural not in _definitions():
        raise KeyError(f"no CustomResourceDefinition for {plural!r} in {CRDS}")
    root, validator, api_version, kind = _validator(plural)
    errors = []
    if body.get("apiVersion", api_version) != api_version:
        errors.append(f"apiVersion: {body['apiVersion']!r} is not {api_version!r}")
    if body.get("kind", kind) != kind:
        errors.append(f"kind: {body['kind']!r} is not {kind!r}")
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and not (len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
        errors.append(f"metadata.name: {name!r} is not a DNS subdomain (lowercase, digits, '-' and '.')")
    obj = _pruned_and_defaulted(copy.deepcopy(body), root)
    # Sorted by path, indices before names at one depth, so the order never depends on jsonschema's.
    structural = sorted(
        _structural_errors(validator, obj), key=lambda e: ([(isinstance(p, str), p) for p in e[0]], e[1])
    )
    errors += [message for _, message in structural]
    errors += _semantic_errors(root, obj, (), {path for path, _ in structural})
    return errors


def _pruned_and_defaulted(value: Any, node: dict[str, Any]) -> Any:
    """The API server's order: a null in a field that is not nullable is pruned, then a missing
    field with a schema default gets it ("Defaulting and Nullable", Kubernetes CRD docs)."""
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name in value and value[name] is None and not sub.get("nullable"):
                del value[name]
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _pruned_and_defaulted(value[name], sub)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            _pruned_and_defaulted(item, node["items"])
    return value


def _path(parts: tuple[Any, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part}]"
    return text or "<root>"


def _structural_errors(validator: Any, obj: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    for error in validator.iter_errors(obj):
        where = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            for name in sorted(set(error.instance) - set(error.schema.get("properties", {}))):
                yield (*where, name), f"{_path((*where, name))}: unknown field"
        elif error.validator == "required":
            name = next(n for n in error.validator_value if error.message.startswith(repr(n)))
            yield (*where, name), f"{_path((*where, name))}: required field is missing"
        elif error.validator in ("maxItems", "minItems"):
            bound = "most" if error.validator == "maxItems" else "least"
            message = f"has {len(error.instance)} items, must have at {bound} {error.validator_value}"
            yield where, f"{_path(where)}: {message}"
        else:
            yield where, f"{_path(where)}: {error.message}"


def _semantic_errors(
    node: dict[str, Any], value: Any, where: tuple[Any, ...], broken: set[tuple[Any, ...]]
) -> list[str]:
    """List uniqueness and CEL rules, on the nodes whose subtree has no structural error."""
    if any(path[: len(where)] == where for path in broken):
        errors = []  # CEL would only restate the structural error, or fail to evaluate.
    else:
        errors = [f"{_path(where)}: {message}" for message in _failed_rules(node, value)]
    if isinstance(value, dict):
        for name, sub in value.items():
            child = node.get("properties", {}).get(name) or node.get("additionalProperties")
            if isinstance(child, dict):
                errors += _semantic_errors(child, sub, (*where, name), broken)
    elif isinstance(value, list) and "items" in node:
        errors += _duplicates(node, value, where)
        for index, item in enumerate(value):
            errors += _semantic_errors(node["items"], item, (*where, index), broken)
    return errors


def _duplicates(node: dict[str, Any], items: list[Any], where: tuple[Any, ...]) -> list[str]:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys", ())
    seen: dict[str, int] = {}
    errors = []
    for index, item in enumerate(items):
        if list_type == "map" and isinstance(item, dict):
            identity = repr({key: item.get(key) for key in keys})
        elif list_type == "set":
            identity = repr(item)
        else:
            continue
        if identity in seen:
            errors.append(f"{_path((*where, index))}: duplicate entry {identity}, first at [{seen[identity]}]")
        seen.setdefault(identity, index)
    return errors


def _failed_rules(node: dict[str, Any], value: Any) -> Iterator[str]:
    for rule in node.get("x-kubernetes-validations", ()):
        try:
            result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as error:
            result = error
        if isinstance(result, celpy.CELEvalError):
            yield f"rule {rule['rule']!r} could not be evaluated: {result.args[0]}"
        elif not result:
            yield rule.get("message") or f"failed rule: {rule['rule']}"


def _sum(items: celtypes.ListType) -> Any:
    """Kubernetes' CEL list extension ``<list>.sum()``: 0 for an empty list."""
    total: Any = celtypes.IntType(0)
    for item in items:
        total = total + item
    return total


@functools.cache
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions={"sum": _sum})


def nodes(node: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node below ``node``, with its path, reached as Kubernetes reaches them."""
    found = [(where or "<root>", node)]
    for name, sub in node.get("properties", {}).items():
        found += nodes(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += nodes(node[key], f"{where}.{key}")
    return found


def structural_problems(root: dict[str, Any]) -> list[str]:
    """Why ``root`` is not a structural schema the API server accepts; empty when it is."""
    problems = []
    for where, node in nodes(root):
        for key in ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "patternProperties"):
            if key in node:
                problems.append(f"{where}: {key} is not allowed")
        if not node.get("type") and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{where}: no type")
        if node.get("type") == "null" or node.get("uniqueItems"):
            problems.append(f"{where}: type null or uniqueItems")
        if "additionalProperties" in node and (
            "properties" in node or not isinstance(node["additionalProperties"], dict)
        ):
            problems.append(f"{where}: additionalProperties must be a schema, and never beside properties")
        if node.get("x-kubernetes-preserve-unknown-fields", True) is not True:
            problems.append(f"{where}: preserve-unknown-fields must be true or absent")
        if "default" in node and where.split(".")[1:2] in (["metadata"], ["apiVersion"], ["kind"]):
            problems.append(f"{where}: no defaults in resource metadata")
        defaulted = {name for name, sub in node.get("properties", {}).items() if "default" in sub}
        if defaulted & set(node.get("required", ())):
            problems.append(f"{where}: required fields with defaults {sorted(defaulted & set(node['required']))}")
        items = node.get("items", {})
        if node.get("x-kubernetes-list-type") == "map":
            for key in node.get("x-kubernetes-list-map-keys") or ["<none>"]:
                prop = items.get("properties", {}).get(key, {})
                if prop.get("type") not in ("string", "integer", "boolean"):
                    problems.append(f"{where}: list-map key {key!r} is not a scalar item property")
                if key not in items.get("required", ()) and "default" not in prop:
                    problems.append(f"{where}: list-map key {key!r} is neither required nor defaulted")
        if node.get("x-kubernetes-list-type") == "set" and items.get("type") in ("object", "array"):
            problems.append(f"{where}: set items must be scalars")
    metadata = root.get("properties", {}).get("metadata")
    if metadata not in (None, {"type": "object"}):
        problems.append(f"metadata: only type: object, got {metadata}")
    return problems
