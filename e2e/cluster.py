"""The kind cluster the e2e suite runs on, as ``kind-config.yaml`` declares it: pure reading, no cluster needed.

kind names a cluster's nodes ``<name>-<role>``, then ``<name>-<role>2``, ``<name>-<role>3``, ...
per role, in the order of the config's ``nodes`` (``MakeNodeNamer`` in kind's
``pkg/cluster/internal/providers/common``); ``workers`` relies on it, and the suite checks the
names against the live cluster.
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

CONFIG = pathlib.Path(__file__).with_name("kind-config.yaml")
DEFAULT_NAME = "kind"
"""The cluster name kind uses when the config names none."""


def read(path: pathlib.Path = CONFIG) -> dict[str, Any]:
    """The kind config at ``path`` as a mapping."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def name(config: Mapping[str, Any]) -> str:
    """The cluster's name: the config's ``name``, as ``kind create cluster --config`` takes it."""
    return str(config.get("name") or DEFAULT_NAME)


def node_names(config: Mapping[str, Any]) -> list[str]:
    """Every node's name, in the config's order, as kind gives them."""
    seen: collections.Counter[str] = collections.Counter()
    names = []
    for node in config.get("nodes") or ():
        role = node["role"]
        seen[role] += 1
        names.append(f"{name(config)}-{role}{seen[role] if seen[role] > 1 else ''}")
    return names


def workers(config: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each worker's name and the labels the config gives it (empty for an unlabelled worker)."""
    return {
        node_name: {str(k): str(v) for k, v in (node.get("labels") or {}).items()}
        for node_name, node in zip(node_names(config), config.get("nodes") or (), strict=True)
        if node["role"] == "worker"
    }


def taints(config: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Each worker's taints, from the ``JoinConfiguration`` patches that register it with them."""
    found: dict[str, list[dict[str, str]]] = {}
    for node_name, node in zip(node_names(config), config.get("nodes") or (), strict=True):
        if node["role"] != "worker":
            continue
        found[node_name] = [
            {str(k): str(v) for k, v in taint.items()}
            for patch in node.get("kubeadmConfigPatches") or ()
            if (document := yaml.safe_load(patch)).get("kind") == "JoinConfiguration"
            for taint in (document.get("nodeRegistration") or {}).get("taints") or ()
        ]
    return found
