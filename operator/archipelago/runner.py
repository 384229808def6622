"""Starting the operator (``archipelago run``) and reading a workload (``archipelago explain``).

The only place that loads Kubernetes credentials: in-cluster service account first, then the
kubeconfig, as kubectl does.
"""

from __future__ import annotations

import logging

import kopf
import kubernetes.client
import kubernetes.config

from archipelago import api, config, describe, handlers, metrics
from archipelago.api import resources


def liveness_endpoint(port: int | None) -> str | None:
    """kopf's liveness probe on ``port``: answers while the operator's tasks are alive."""
    return None if port is None else f"http://0.0.0.0:{port}/healthz"


def client() -> kubernetes.client.ApiClient:
    """An API client from the in-cluster service account, else from the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def run(settings: config.Operator, *, peering: str | None, priority: int, verbose: bool) -> None:
    """Run the operator until interrupted.

    ``peering`` names a kopf peering object: of several replicas, only the one with the highest
    ``priority`` schedules, the others stand by. ``None`` runs standalone (one replica).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)
    kopf.run(
        registry=handlers.registry,
        clusterwide=True,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        memo=kopf.Memo(runtime=handlers.Runtime(settings, client())),
        liveness_endpoint=liveness_endpoint(settings.health_port),
    )


KINDS = {
    **{k.singular: k for k in resources.KINDS},
    **{k.plural: k for k in resources.KINDS},
    **{s: k for k in resources.KINDS for s in k.short_names},
}


def explain(reference: str, namespace: str, api_client: kubernetes.client.ApiClient | None = None) -> str:
    """The ``describe.render`` text of ``<kind>/<name>``.

    Raises ``ValueError`` for an unknown kind and ``kubernetes.client.ApiException`` for a
    missing object.
    """
    kind_name, _, name = reference.partition("/")
    kind = KINDS.get(kind_name.lower())
    if kind is None or not name:
        raise ValueError(f"{reference!r}: use <kind>/<name> with kind one of {', '.join(sorted(KINDS))}")
    api_client = api_client or client()
    custom = kubernetes.client.CustomObjectsApi(api_client)
    if kind.namespaced:
        obj = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, kind.plural, name)
    else:
        obj = custom.get_cluster_custom_object(api.GROUP, api.VERSION, kind.plural, name)
    selector = f"involvedObject.name={name},involvedObject.kind={kind.kind}"
    events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(
        namespace if kind.namespaced else "default", field_selector=selector
    )
    mine = [e for e in events.items if e.involved_object.name == name and e.involved_object.kind == kind.kind]
    return describe.render(obj, [api_client.sanitize_for_serialization(e) for e in mine])
