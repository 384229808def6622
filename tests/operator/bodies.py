"""Pure functions on object bodies, as the API server reads them: selectors, patches, Status errors."""

from __future__ import annotations

import copy
import http
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch
import jsonpointer
import kmock

Body = dict[str, Any]

_MERGE_KEYS = ("type", "name", "uid")  # strategic merge: conditions, containers, owner references
_LABEL_TERM = re.compile(r"\s*(!?)([\w./-]+)\s*(?:(==|!=|=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")
_FIELD_TERM = re.compile(r"\s*([\w.]+)\s*(==|!=|=)\s*(\S*)\s*")


def error(status: int, message: str, reason: str | None = None, **details: Any) -> kmock.KubernetesError:
    """An error kmock answers as a Kubernetes Status; the reason defaults to the HTTP phrase (NotFound)."""
    reason = reason or http.HTTPStatus(status).phrase.replace(" ", "")
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def success(code: int) -> Body:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": code}


def selector(params: Mapping[str, str]) -> Callable[[Body], bool]:
    """``labelSelector`` (equality, set and existence forms) and ``fieldSelector`` as a predicate."""
    labels = [_LABEL_TERM.fullmatch(t) for t in re.split(r",(?![^(]*\))", params.get("labelSelector", "")) if t.strip()]
    fields = [_FIELD_TERM.fullmatch(t) for t in params.get("fieldSelector", "").split(",") if t.strip()]
    if not all(labels) or not all(fields):
        raise error(400, f"unable to parse the selectors in {dict(params)!r}")

    def label_ok(have: Mapping[str, str], term: re.Match[str]) -> bool:
        negated, key, op, value, set_op, values = term.groups()
        if set_op:  # a missing label is in no set
            return (have.get(key) in {v.strip() for v in values.split(",")}) == (set_op == "in")
        if op:
            return (have.get(key) == value) == (op != "!=")
        return (key in have) != bool(negated)

    def match(body: Body) -> bool:
        have = (body.get("metadata") or {}).get("labels") or {}
        return all(label_ok(have, term) for term in labels) and all(
            (str(field(body, term[1])) == term[3]) == (term[2] != "!=") for term in fields
        )

    return match


def field(body: Body, path: str) -> Any:
    """The value at a dotted path, or "" when absent (so ``spec.nodeName=`` selects unbound pods)."""
    for part in path.split("."):
        body = body.get(part) if isinstance(body, dict) else None
    return "" if body is None else body


def patched(current: Body, method: str, content_type: str, data: Any, *, strategic_ok: bool) -> Body:
    """The object a PUT or PATCH makes of ``current``, which stays untouched."""
    if method == "PUT":
        return copy.deepcopy(data or {})
    if "json-patch" in content_type or isinstance(data, list):
        try:
            return jsonpatch.apply_patch(current, data)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:  # kopf expects 422
            raise error(422, f"the server rejected our request due to an error in our request: {e}", "Invalid") from e
    strategic = "strategic" in content_type
    if strategic and not strategic_ok:  # as the real server: custom resources have no patch strategy
        raise error(415, "strategic merge patch is not supported for custom resources; use a merge patch")
    return merge(copy.deepcopy(current), data, strategic=strategic)


def merge(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; with ``strategic``, lists of dicts merge by their key (type, name, uid)."""
    if isinstance(patch, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge(result.get(key), value, strategic=strategic)
        return result
    if strategic and patch and isinstance(patch, list) and isinstance(target, list):
        items = patch + target
        if key := next((k for k in _MERGE_KEYS if all(isinstance(i, dict) and k in i for i in items)), None):
            merged = {item[key]: item for item in target}
            for item in patch:
                merged[item[key]] = merge(merged.get(item[key]), item, strategic=True)
            return list(merged.values())
    return copy.deepcopy(patch)


def delete_options(data: Any, params: Mapping[str, str]) -> Body:
    """DeleteOptions from the body, or else from the query (``?gracePeriodSeconds=0``)."""
    options = dict(data) if isinstance(data, dict) else {}
    options.setdefault("propagationPolicy", params.get("propagationPolicy"))
    if "gracePeriodSeconds" in params:
        options.setdefault("gracePeriodSeconds", int(params["gracePeriodSeconds"]))
    return options


def essence(body: Body) -> Body:
    """What the generation counts: all but metadata and status."""
    return {k: v for k, v in body.items() if k not in ("metadata", "status")}
