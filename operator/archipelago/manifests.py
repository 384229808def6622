"""The Pod objects that carry out a placement: pure translation, no API calls.

A pod is built from its role's ``PodTemplateSpec`` and its ledger allocation. It is bound at
creation (``spec.nodeName``), so kube-scheduler never sees it; it does not request the
vendor's extended resource, because Archipelago, not the device plugin, chooses the cards.
The cards reach the container runtime through ``NVIDIA_VISIBLE_DEVICES`` (NVIDIA Container
Toolkit) or ``ASCEND_VISIBLE_DEVICES`` (Ascend Docker Runtime), and the exact allocation is
recorded in annotations from which the ledger is rebuilt.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from archipelago import api
from archipelago.api import common, labels
from archipelago.cluster import Cluster
from archipelago.cluster import ledger as ledger_
from archipelago.inventory import pods as inventory_pods
from archipelago.queueing import Workload

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A Service name (RFC 1035 label)."""
_SIGNAL_NUMBERS = {"SIGHUP": 1, "SIGINT": 2, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15}


def pod(
    job: Workload,
    role: str,
    index: int,
    template: Mapping[str, Any],
    allocation: ledger_.Allocation,
    cluster: Cluster,
    *,
    gang: str,
    gang_pods: int,
    started_at: str,
) -> dict[str, Any]:
    """The Pod for replica ``index`` of ``role`` of ``job``, on the allocation's node.

    The template's labels, annotations and spec are kept; Archipelago adds its labels, the
    allocation annotations, the owner reference, ``nodeName``, the job's PriorityClass, the
    device environment in every container, and, for a TrainingJob, the checkpoint grace period
    and signal (a ``preStop`` hook sends a signal other than SIGTERM to PID 1).
    """
    node = cluster.nodes[allocation.node]
    meta = template.get("metadata") or {}
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    name = allocation.pod.split("/", 1)[1]
    pod_labels = {
        **(meta.get("labels") or {}),
        labels.MANAGED_BY: labels.MANAGER,
        labels.JOB_KIND: job.kind.kind,
        labels.JOB_NAME: job.name,
        labels.GANG: gang.rsplit("/", 1)[-1] if job.training else f"{job.name}-{index}",
        labels.ROLE: role,
        labels.INDEX: str(index),
    }
    annotations = {
        **(meta.get("annotations") or {}),
        **inventory_pods.annotations(allocation, cluster),
        labels.POD_GANG_PODS: str(gang_pods),
        labels.POD_ATTEMPT: str(job.status.restarts),
        labels.POD_STARTED_AT: started_at,
    }
    env = [{"name": k, "value": v} for k, v in inventory_pods.visible_devices(allocation, node).items()]
    env += [
        {"name": "ARCHIPELAGO_JOB", "value": job.name},
        {"name": "ARCHIPELAGO_ROLE", "value": role},
        {"name": "ARCHIPELAGO_INDEX", "value": str(index)},
        {"name": "ARCHIPELAGO_GANG_PODS", "value": str(gang_pods)},
    ]
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or ():
            names = {k["name"] for k in env}
            container["env"] = [e for e in container.get("env") or () if e.get("name") not in names] + env
    spec["nodeName"] = node.name
    spec.setdefault("restartPolicy", "Never")
    if job.spec.priority_class_name:
        spec["priorityClassName"] = job.spec.priority_class_name
    if job.training:
        _checkpoint(spec, job.spec.checkpoint)
        if _DNS_1035.match(job.name) and len(name) <= 63:
            # <pod>.<job> resolves through the job's headless Service (see ``service``).
            spec.setdefault("hostname", name)
            spec.setdefault("subdomain", job.name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": pod_labels,
            "annotations": annotations,
            "ownerReferences": [owner(job)],
        },
        "spec": spec,
    }


def service(job: Workload) -> dict[str, Any] | None:
    """The headless Service that gives a TrainingJob's pods DNS names, ``<pod>.<job>``.

    MPI launchers and ``torchrun`` rendezvous reach their peers by these names, as with
    Kubeflow's training operators. None when the job's name cannot be a Service name.
    """
    if not _DNS_1035.match(job.name):
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "labels": {labels.MANAGED_BY: labels.MANAGER, labels.JOB_NAME: job.name},
            "ownerReferences": [owner(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {labels.JOB_KIND: job.kind.kind, labels.JOB_NAME: job.name},
        },
    }


def reference(kind: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """An Event's ``involvedObject``: the workload of ``kind`` with metadata ``meta``."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": kind,
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
    }


def owner(job: Workload) -> dict[str, Any]:
    """The controller owner reference to ``job``: deleting the job deletes its pods."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": job.kind.kind,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _checkpoint(spec: dict[str, Any], checkpoint: common.Checkpoint) -> None:
    """Give the pod the job's checkpoint grace, and send its signal before the kill."""
    spec["terminationGracePeriodSeconds"] = checkpoint.grace_period_seconds
    if checkpoint.signal == common.Signal.SIGTERM:
        return
    number = _SIGNAL_NUMBERS[checkpoint.signal]
    for container in spec.get("containers") or ():
        lifecycle = container.setdefault("lifecycle", {})
        lifecycle.setdefault(
            "preStop",
            {"exec": {"command": ["/bin/sh", "-c", f"kill -{number} 1; sleep {checkpoint.grace_period_seconds}"]}},
        )
