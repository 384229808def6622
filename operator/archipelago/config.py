"""Operator settings: one frozen dataclass, each field documented, every value overridable by flag."""

from __future__ import annotations

import dataclasses

from archipelago.placement import plan


@dataclasses.dataclass(frozen=True)
class Actuation:
    """How hard the operator tries each API write."""

    attempts: int = 4
    """Tries per request before giving up (a gang is then rolled back)."""
    backoff_s: float = 0.2
    """Wait before the second try; doubled before each later one."""
    timeout_s: float = 10.0
    """Bound on one API request, seconds."""
    parallel: int = 16
    """API requests in flight at once."""


@dataclasses.dataclass(frozen=True)
class Operator:
    cycle: plan.Config = plan.Config()
    """The scheduling cycle: budget (default 1 s), seed, solver and preemption switches."""
    resync_s: float = 10.0
    """A cycle runs at least this often (seconds), even without events."""
    settle_s: float = 0.2
    """After an event, wait this long (seconds) so a burst of events makes one cycle."""
    metrics_port: int | None = 9090
    """Port of the Prometheus endpoint; None: no endpoint."""
    health_port: int | None = 8080
    """Port of kopf's liveness endpoint (``/healthz``, the chart's probe); None: no endpoint."""
    node_lost_after_s: float = 300.0
    """A node not Ready for this long (seconds) has lost its pods and their gangs restart elsewhere;
    before that it only takes no new pods. 300 s is the node lifecycle controller's default
    eviction (the ``tolerationSeconds`` of its ``not-ready``/``unreachable`` NoExecute taints)."""
    actuation: Actuation = Actuation()

    def __post_init__(self) -> None:
        if self.node_lost_after_s < 0:
            raise ValueError(f"node_lost_after_s must not be negative: {self.node_lost_after_s}")
        if self.resync_s <= 0 or self.settle_s < 0:
            raise ValueError(f"resync_s must be positive and settle_s not negative: {self.resync_s}, {self.settle_s}")
