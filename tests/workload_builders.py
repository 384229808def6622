"""Keyword builders for TrainingJob, InferenceService and PriorityClass objects and pod views."""

from __future__ import annotations

from typing import Any

from archipelago import lifecycle

NAMESPACE = "team-a"


def make_template(cpu: str = "4", memory: str = "16Gi", image: str = "nvcr.io/nvidia/pytorch:24.05-py3") -> dict:
    return {
        "metadata": {"labels": {"app": "train"}},
        "spec": {
            "containers": [{"name": "main", "image": image, "resources": {"requests": {"cpu": cpu, "memory": memory}}}]
        },
    }


def make_job(
    name: str = "llm",
    *,
    workers: int = 2,
    cards: int = 8,
    launcher: bool = False,
    models: tuple[str, ...] = (),
    topology: dict | None = None,
    priority_class: str | None = None,
    preemptible: bool = False,
    min_member: int | None = None,
    suspend: bool = False,
    backoff_limit: int = 3,
    grace: int = 30,
    signal: str = "SIGTERM",
    namespace: str = NAMESPACE,
    status: dict | None = None,
    **spec_extra: Any,
) -> dict:
    """A TrainingJob object (as the API returns it) with an optional launcher and ``workers`` workers."""
    replica_sets = []
    if launcher:
        replica_sets.append(
            {"name": "launcher", "replicas": 1, "cards": {"count": 0}, "template": make_template("1", "2Gi")}
        )
    replica_sets.append({"name": "worker", "replicas": workers, "cards": {"count": cards}, "template": make_template()})
    spec: dict[str, Any] = {
        "replicaSets": replica_sets,
        "preemptible": preemptible,
        "suspend": suspend,
        "backoffLimit": backoff_limit,
        "checkpoint": {"gracePeriodSeconds": grace, "signal": signal},
        **spec_extra,
    }
    if models:
        spec["deviceModels"] = list(models)
    if topology:
        spec["topology"] = topology
    if priority_class:
        spec["priorityClassName"] = priority_class
    if min_member is not None:
        spec["minMember"] = min_member
    return {**_workload("TrainingJob", name, namespace, spec), "status": status or {}}


def make_service(
    name: str = "chat",
    *,
    replicas: int = 2,
    milli: int = 250,
    memory_mib: int = 16384,
    models: tuple[str, ...] = (),
    priority_class: str | None = None,
    namespace: str = NAMESPACE,
) -> dict:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "cards": {"count": 1, "milli": milli, "memoryMiB": memory_mib},
        "template": make_template("2", "8Gi", image="vllm/vllm-openai:v0.6.3"),
    }
    if models:
        spec["deviceModels"] = list(models)
    if priority_class:
        spec["priorityClassName"] = priority_class
    return _workload("InferenceService", name, namespace, spec)


def _workload(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict:
    """A custom object of ``kind`` as the API returns it: server-set metadata filled in."""
    return {
        "apiVersion": "archipelago.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-11-21T10:00:00Z",
        },
        "spec": spec,
    }


def make_priority_class(name: str, value: int, *, default: bool = False) -> dict:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "globalDefault": default,
    }


def make_view(
    name: str = "llm-worker-0",
    *,
    role: str = "worker",
    index: int = 0,
    node: str = "node-0",
    phase: str = "Running",
    deleting: bool = False,
) -> lifecycle.PodView:
    return lifecycle.PodView(NAMESPACE, name, role, index, node, phase, deleting)
