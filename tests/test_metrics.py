"""The Prometheus endpoint serves every metric, each named once with the archipelago_ prefix."""

import socket
import urllib.request

from archipelago import metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_endpoint_serves_the_declared_metrics():
    port = free_port()
    metrics.serve(port, address="127.0.0.1")
    metrics.PENDING_GANGS.labels(reason="TopologyFragmented").set(3)

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    for name in (
        "archipelago_cycle_duration_seconds_bucket",
        "archipelago_pending_gangs",
        "archipelago_fragmented_milli_cards",
        "archipelago_preemptions_total",
        "archipelago_gang_restarts_total",
    ):
        assert name in text
    assert 'archipelago_pending_gangs{reason="TopologyFragmented"} 3.0' in text


def test_every_metric_carries_the_prefix_and_only_its_own_registry_holds_them():
    names = [m.name for m in metrics.REGISTRY.collect()]
    assert names and all(n.startswith("archipelago_") for n in names)
    assert len(names) == len(set(names))
