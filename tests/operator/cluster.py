"""A small GPU cluster in the emulator, and the product operator started against it.

``Cluster`` builds pools and nodes the way device plugins and an admin would label them, and
starts ``archipelago.handlers.registry`` with short cycles so scenarios finish in seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kubernetes

from archipelago import api, config, handlers
from archipelago.api import labels, resources
from archipelago.placement import plan
from tests.workload_builders import make_priority_class

POOL_LABEL = "archipelago.dev/pool"
NAMESPACE = "team-a"
PLURALS = {k.kind: k.plural for k in resources.KINDS}
"""Kind to plural, for the custom objects API."""
FAST = config.Operator(
    cycle=plan.Config(budget_s=0.3, preemption_delay_s=3.0, preemption_exempt_s=0),
    resync_s=0.5,
    settle_s=0.05,
    metrics_port=None,
    actuation=config.Actuation(attempts=3, backoff_s=0.05, timeout_s=1.0),
)


@dataclasses.dataclass
class Cluster:
    core: kubernetes.client.CoreV1Api
    custom: kubernetes.client.CustomObjectsApi
    kubelet: Any
    start_operator: Callable[..., Any]
    client: kubernetes.client.ApiClient
    settings: config.Operator = FAST

    def pool(self, name: str = "h800", *, fractional: bool = False, **spec: Any) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": "AcceleratorPool",
            "metadata": {"name": name},
            "spec": {
                "nodeSelector": {POOL_LABEL: name},
                "kind": "GPU",
                "resourceName": "nvidia.com/gpu",
                "fractional": fractional,
                **spec,
            },
        }
        self.custom.create_cluster_custom_object(api.GROUP, api.VERSION, "acceleratorpools", body)

    def node(self, name: str, *, island: str, cards: int = 8, pool: str = "h800", product: str = "NVIDIA-H800") -> None:
        node_labels = {
            POOL_LABEL: pool,
            "archipelago.dev/island": island,
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": str(cards),
        }
        self.kubelet.add_node(name, labels=node_labels, capacity={"nvidia.com/gpu": str(cards)})

    def priority_class(self, name: str, value: int) -> None:
        kubernetes.client.SchedulingV1Api(self.client).create_priority_class(make_priority_class(name, value))

    def start(self) -> Any:
        memo = handlers.Runtime(self.settings, self.client)
        import kopf

        return self.start_operator(handlers.registry, memo=kopf.Memo(runtime=memo))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        plural = PLURALS[body["kind"]]
        return self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, plural, body)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        plural = PLURALS[kind]
        return self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, plural, name)

    def pods(self, job: str | None = None, *, live: bool = True) -> list[kubernetes.client.V1Pod]:
        items = self.core.list_namespaced_pod(NAMESPACE).items
        mine = [p for p in items if job is None or (p.metadata.labels or {}).get(labels.JOB_NAME) == job]
        if live:
            mine = [
                p for p in mine if not p.metadata.deletion_timestamp and p.status.phase not in ("Succeeded", "Failed")
            ]
        return sorted(mine, key=lambda p: p.metadata.name)

    def events(self, name: str) -> list[kubernetes.client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(NAMESPACE).items if e.involved_object.name == name]

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def condition(self, kind: str, name: str, type_: str = "Scheduled") -> dict[str, Any] | None:
        status = self.get(kind, name).get("status") or {}
        return next((c for c in status.get("conditions") or () if c["type"] == type_), None)

    def island_of(self, node: str) -> str:
        return self.core.read_node(node).metadata.labels["archipelago.dev/island"]
