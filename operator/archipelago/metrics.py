"""Prometheus metrics, each declared once, prefixed ``archipelago_`` with a unit suffix.

They live in their own registry so that importing the package never touches the process's
default one; ``serve`` exposes it on a port (prometheus-client's HTTP server).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import prometheus_client

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)

CYCLE_SECONDS = prometheus_client.Histogram(
    "archipelago_cycle_duration_seconds",
    "Wall-clock time of one scheduling cycle: snapshot, solve, validate.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    registry=REGISTRY,
)
PENDING_GANGS = prometheus_client.Gauge(
    "archipelago_pending_gangs",
    "Gangs waiting after the last cycle, by the reason they wait.",
    ["reason"],
    registry=REGISTRY,
)
CARDS = prometheus_client.Gauge(
    "archipelago_cards",
    "Healthy cards on ready nodes, by pool and card model.",
    ["pool", "model"],
    registry=REGISTRY,
)
ALLOCATED_CARDS = prometheus_client.Gauge(
    "archipelago_allocated_cards",
    "Cards held by pods (fractions summed: 250 milli-cards count 0.25), by pool and card model.",
    ["pool", "model"],
    registry=REGISTRY,
)
FRAGMENTED_MILLI_CARDS = prometheus_client.Gauge(
    "archipelago_fragmented_milli_cards",
    "Free milli-cards the current workloads' typical pods cannot use (FGD's fragmentation, ATC '23).",
    registry=REGISTRY,
)
PREEMPTIONS = prometheus_client.Counter(
    "archipelago_preemptions_total",
    "Gangs preempted (or shrunk) to make room for higher-priority gangs.",
    registry=REGISTRY,
)
GANG_RESTARTS = prometheus_client.Counter(
    "archipelago_gang_restarts_total",
    "Whole-gang restarts after a failed pod or a lost node.",
    registry=REGISTRY,
)
PLACEMENTS = prometheus_client.Counter(
    "archipelago_gangs_placed_total",
    "Gangs whose pods were created.",
    registry=REGISTRY,
)
INVALID_PLANS = prometheus_client.Counter(
    "archipelago_invalid_plans_total",
    "Cycles whose plan the solver-independent validator rejected (a bug: the plan is not applied).",
    registry=REGISTRY,
)


def observe(
    seconds: float,
    waiting: Sequence[str],
    used: Mapping[tuple[str, str], tuple[int, int]],
    fragmented: float | None,
) -> None:
    """Record one cycle: its duration, the reason of each waiting gang, per (pool, model) card
    capacity and use in milli-cards, and FGD's fragmentation (None: no pods to measure it by)."""
    CYCLE_SECONDS.observe(seconds)
    PENDING_GANGS.clear()
    for reason, count in collections.Counter(waiting).items():
        PENDING_GANGS.labels(reason=reason).set(count)
    for (pool, model), (capacity, held) in used.items():
        CARDS.labels(pool=pool, model=model).set(capacity / 1000)
        ALLOCATED_CARDS.labels(pool=pool, model=model).set(held / 1000)
    if fragmented is not None:
        FRAGMENTED_MILLI_CARDS.set(fragmented)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose the metrics at ``http://<address>:<port>/metrics`` from a daemon thread."""
    prometheus_client.start_http_server(port, addr=address, registry=REGISTRY)
