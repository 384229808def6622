"""Kubernetes objects as plain dicts: read from YAML, keyed by kind and name, checked like an API server.

For the tests of the install manifests: ``deploy()`` reads ``deploy/``, ``keyed`` indexes any
other set (the Helm chart's render), ``validate`` checks one object against Kubernetes' own
OpenAPI schema or, for a custom kind, against its CRD in ``crds/``, and ``grants`` flattens a
ClusterRole into the calls it allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.support import schemas

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
"""The oldest Kubernetes the CRDs support (CEL rules GA), and the newest kubernetes-validate knows."""
CUSTOM_KINDS = {"ClusterKopfPeering": "clusterkopfpeerings"}
"""Kinds Kubernetes' own schema does not know: checked against their CRD in ``crds/``."""
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "ClusterKopfPeering"}

Key = tuple[str, str]
"""(kind, metadata.name)."""
Grant = tuple[str, str, str, str | None]
"""(API group, resource, verb, resource name or None for any)."""


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text; empty documents (comments only) are skipped."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def keyed(docs: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """``docs`` by (kind, name). Two objects of one kind and name are an error, not the last one."""
    result: dict[Key, dict[str, Any]] = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in result, f"{key} is defined twice"
        result[key] = doc
    return result


def deploy() -> dict[Key, dict[str, Any]]:
    """Every object in ``deploy/`` (the kustomization is not one)."""
    paths = sorted(path for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml")
    return keyed(doc for path in paths for doc in documents(path.read_text(encoding="utf-8")))


def validate(document: dict[str, Any], version: str) -> None:
    """Raise unless the API server of Kubernetes ``version`` would accept ``document`` (unknown fields included)."""
    if document["kind"] in CUSTOM_KINDS:
        assert schemas.validate(CUSTOM_KINDS[document["kind"]], document) == []
    else:
        kubernetes_validate.validate(document, version, strict=True)


def grants(role: dict[str, Any]) -> set[Grant]:
    """Every (group, resource, verb, name) a ClusterRole's rules allow."""
    return {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [None]
    }
