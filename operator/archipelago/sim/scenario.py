"""A simulation input: a cluster and the pods that arrive on it."""

from __future__ import annotations

import dataclasses

from archipelago import cluster as cluster_
from archipelago import workload


@dataclasses.dataclass(frozen=True, slots=True)
class TracePod:
    """A pod as a trace records it: its request, and when it was created and deleted (seconds).

    ``deleted`` is None when the pod never leaves; ``created`` is None when the trace has no
    times (the ``multigpu20`` variant), which only the ``fgd`` protocol accepts.
    """

    request: workload.PodRequest
    created: float | None = None
    deleted: float | None = None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named cluster and the pods submitted to it, in trace order."""

    name: str
    cluster: cluster_.Cluster
    pods: tuple[TracePod, ...]

    @property
    def capacity_milli(self) -> int:
        """Healthy cards of the cluster, in milli-cards."""
        return self.cluster.capacity_milli

    def requests(self) -> list[workload.PodRequest]:
        return [p.request for p in self.pods]
