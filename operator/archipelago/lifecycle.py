"""What a workload's pods say about it: running, finished, to restart, to requeue.

Pure decisions over plain values; the scheduler applies them through ``actuation``. A
TrainingJob is one gang: it succeeds when its launcher succeeds (or, without a launcher, when
all its workers do); a failed pod or a pod on a lost node restarts the whole gang, up to
``backoffLimit`` restarts. Fewer live pods than the gang's ``minMember`` (an interrupted
creation) removes the rest and requeues it without counting a restart. An InferenceService
restarts only the replica that failed and never fails itself.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from archipelago.api import common, labels
from archipelago.api import reasons as reasons_

LAUNCHER = "launcher"
"""The role whose success ends a TrainingJob, when the job has one."""

Reason = reasons_.Reason
Type = reasons_.ConditionType


@dataclasses.dataclass(frozen=True, slots=True)
class PodView:
    """The facts about one pod that decide its workload's fate."""

    namespace: str
    name: str
    role: str
    index: int
    node: str
    phase: str
    deleting: bool
    attempt: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def live(self) -> bool:
        """Holds (or may still hold) its cards: not finished and not being deleted."""
        return self.phase not in ("Succeeded", "Failed") and not self.deleting


def view(pod: Mapping[str, Any]) -> PodView:
    """The ``PodView`` of a pod the operator created (its labels name the role and index)."""
    meta = pod.get("metadata") or {}
    pod_labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    try:
        index = int(pod_labels.get(labels.INDEX, "0"))
        attempt = int(annotations.get(labels.POD_ATTEMPT, "0"))
    except ValueError:
        index, attempt = 0, 0
    return PodView(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        role=pod_labels.get(labels.ROLE, ""),
        index=index,
        node=(pod.get("spec") or {}).get("nodeName") or "",
        phase=(pod.get("status") or {}).get("phase") or "Pending",
        deleting=bool(meta.get("deletionTimestamp")),
        attempt=attempt,
    )


class State(enum.Enum):
    QUEUED = "queued"
    """No pods: the workload waits for the scheduler."""
    RUNNING = "running"
    """Its gang holds cards."""
    DRAINING = "draining"
    """Its pods are terminating; it is requeued when they are gone."""
    DONE = "done"
    """Succeeded, failed or suspended: nothing to schedule."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do with a workload now.

    ``delete`` lists pod names to remove; ``restart`` counts a restart toward
    ``backoffLimit`` and ``avoid`` names the nodes its next placement avoids (those of the
    failed pods and the lost nodes, sorted); ``phase`` and ``condition`` go to the status (``condition`` is
    ``(type, status, reason, message)``); ``missing`` lists the inference replica indices to
    place.
    """

    state: State
    phase: common.Phase
    delete: tuple[str, ...] = ()
    restart: bool = False
    avoid: tuple[str, ...] = ()
    condition: tuple[str, str, str, str] | None = None
    missing: tuple[int, ...] = ()


def training(
    spec: Any,
    status: common.WorkloadStatus,
    pods: Sequence[PodView],
    lost_nodes: Collection[str],
    min_member: int,
) -> Verdict:
    """The verdict for a TrainingJob with ``spec``, ``status`` and its ``pods``."""
    live = [p for p in pods if p.live]
    # A restart removes finished pods too: the next attempt reuses their names.
    present = [p for p in pods if not p.deleting]
    if status.phase in (common.Phase.SUCCEEDED, common.Phase.FAILED):
        return Verdict(State.DONE, status.phase, delete=_names(live))
    if spec.suspend:
        condition = (
            Type.SUSPENDED,
            "True",
            Reason.SUSPENDED,
            "spec.suspend is true: the pods are removed, the job kept",
        )
        return Verdict(State.DONE, common.Phase.SUSPENDED, delete=_names(live), condition=condition)
    if not pods:
        return Verdict(State.QUEUED, common.Phase.PENDING)
    if not live and any(p.deleting for p in pods):
        return Verdict(State.DRAINING, common.Phase.PENDING)
    roles = {p.role for p in pods}
    finishers = [p for p in pods if p.role == LAUNCHER] if LAUNCHER in roles else _workers(spec, pods)
    if finishers and all(p.phase == "Succeeded" for p in finishers):
        message = "the launcher succeeded" if LAUNCHER in roles else "every worker succeeded"
        return Verdict(
            State.DONE,
            common.Phase.SUCCEEDED,
            delete=_names(live),
            condition=(Type.COMPLETE, "True", Reason.SUCCEEDED, message),
        )
    failed = [p for p in pods if p.phase == "Failed"]
    lost = [p for p in live if p.node in lost_nodes]
    if failed or lost:
        reason, culprit = (Reason.POD_FAILED, failed[0]) if failed else (Reason.NODE_LOST, lost[0])
        cause = f"pod {culprit.name} failed" if failed else f"node {culprit.node} of pod {culprit.name} is lost"
        restarts = status.restarts + 1
        if restarts > spec.backoff_limit:
            message = f"{cause}; {status.restarts} restarts already reach backoffLimit {spec.backoff_limit}"
            return Verdict(
                State.DONE,
                common.Phase.FAILED,
                delete=_names(live),
                condition=(Type.FAILED, "True", Reason.BACKOFF_LIMIT_EXCEEDED, message),
            )
        message = f"{cause}: the whole gang restarts (restart {restarts} of {spec.backoff_limit})"
        return Verdict(
            State.DRAINING,
            common.Phase.PENDING,
            delete=_names(present),
            restart=True,
            avoid=tuple(sorted({p.node for p in [*failed, *lost] if p.node})),
            condition=(Type.SCHEDULED, "False", reason, message),
        )
    alive = [p for p in pods if p.live or p.phase == "Succeeded"]
    if len(alive) < min_member:
        if any(p.deleting for p in pods):
            return Verdict(State.DRAINING, common.Phase.PENDING, delete=_names(live))
        message = f"{len(alive)} of the gang's {min_member} pods exist; the rest are removed and the job requeued"
        return Verdict(
            State.DRAINING,
            common.Phase.PENDING,
            delete=_names(present),
            condition=(Type.SCHEDULED, "False", Reason.GANG_INCOMPLETE, message),
        )
    return Verdict(State.RUNNING, common.Phase.RUNNING)


def inference(spec: Any, pods: Sequence[PodView], lost_nodes: Collection[str]) -> Verdict:
    """The verdict for an InferenceService: failed, lost and surplus replicas go; missing ones queue.

    ``missing`` lists the replicas without any pod; a replica whose pod is deleted now queues
    in a later cycle, once the pod is gone.
    """
    delete = [p for p in pods if not p.deleting and (p.phase in ("Failed", "Succeeded") or p.node in lost_nodes)]
    delete += [p for p in pods if p.live and p.index >= spec.replicas and p not in delete]
    # A replica is placed again only once its old pod is gone: the new one reuses the name.
    present = {p.index for p in pods}
    missing = tuple(i for i in range(spec.replicas) if i not in present)
    running = any(p.live and p.index < spec.replicas and p not in delete for p in pods)
    state = State.RUNNING if running else (State.QUEUED if missing else State.DONE)
    phase = common.Phase.RUNNING if running or spec.replicas == 0 else common.Phase.PENDING
    return Verdict(state, phase, delete=_names(delete), missing=missing)


def _workers(spec: Any, pods: Sequence[PodView]) -> list[PodView]:
    last = spec.replica_sets[-1].name
    return [p for p in pods if p.role == last]


def _names(pods: Sequence[PodView]) -> tuple[str, ...]:
    return tuple(p.name for p in pods)
