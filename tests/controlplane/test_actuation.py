"""The operator's API writes, made as its ServiceAccount on the real API server (so the chart's
RBAC is part of what is tested): Event aggregation, and evictions that a PodDisruptionBudget guards."""

from __future__ import annotations

import asyncio

import kubernetes

from archipelago import actuation
from tests.controlplane import kube


def operator_actuator(installed: kube.Installed) -> actuation.Actuator:
    return actuation.Actuator(kubernetes.config.new_client_from_config(str(installed.operator_kubeconfig)))


def test_an_identical_event_is_counted_on_one_event_and_made_again_once_gone(installed, cluster):
    job = {"apiVersion": "archipelago.dev/v1alpha1", "kind": "TrainingJob", "name": "llm", "uid": "u-1"}
    job["namespace"] = cluster.namespace
    actuator = operator_actuator(installed)

    async def record(times: int, message: str = "needs 16 cards, 8 free") -> None:
        for _ in range(times):
            await actuator.event(job, "Warning", "Unschedulable", message)

    asyncio.run(record(3))
    (event,) = cluster.events("llm")
    assert (event.count, event.reason, event.message) == (3, "Unschedulable", "needs 16 cards, 8 free")
    assert event.last_timestamp >= event.first_timestamp

    cluster.core.delete_namespaced_event(event.metadata.name, cluster.namespace)  # as the event TTL does
    asyncio.run(record(2))
    (again,) = cluster.events("llm")
    assert again.metadata.name != event.metadata.name and again.count == 2

    asyncio.run(record(1, "needs 16 cards, 12 free"))
    assert sorted(e.count for e in cluster.events("llm")) == [1, 2]
