"""Pieces shared by the three kinds: card requests, topology, conditions and status.

Units: cards in whole cards, shares in milli-cards (1000 = one card), device memory in MiB,
durations in seconds. Field descriptions start with the field's JSON name, because users
read them in YAML (``kubectl explain``).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import pydantic
import pydantic.alias_generators
from pydantic import Field

from archipelago.cluster import devices, topology

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A label key or an extended resource name (``archipelago.dev/island``, ``nvidia.com/gpu``)."""

LINK_GROUP = "archipelago.dev/link-group"
AVOID_NODES_MAX = 16
"""Most node names ``status.avoidNodes`` holds; a gang spread wider than this keeps the first ones."""


class Model(pydantic.BaseModel):
    """Base of every API model: camelCase JSON names, unknown fields rejected, immutable."""

    model_config = pydantic.ConfigDict(
        alias_generator=pydantic.alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


def cel(rule: str, message: str) -> dict[str, Any]:
    """A CEL validation rule for the CRD schema (``x-kubernetes-validations``)."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True, "type": "object"}
"""Schema of an embedded object we do not model (a ``PodTemplateSpec``)."""


DeviceKind = devices.DeviceKind


class TopologyMode(enum.StrEnum):
    REQUIRED = "Required"
    PREFERRED = "Preferred"


class Topology(Model):
    """Where a workload's pods should sit together."""

    level: Annotated[str, Field(pattern=QUALIFIED_NAME, max_length=253)] = Field(
        topology.ISLAND,
        description=(
            "level: a topology level of the pool (a node label key such as archipelago.dev/island or "
            "archipelago.dev/spine), kubernetes.io/hostname for one node, or archipelago.dev/link-group "
            "for one NVLink domain or HCCS ring inside a node."
        ),
    )
    mode: TopologyMode = Field(
        TopologyMode.PREFERRED,
        description=(
            "mode: Required keeps every pod in one domain of the level or the workload waits; "
            "Preferred lets the scheduler spread, at a cost per extra domain, once the workload has "
            "waited the scheduler's spread delay for one domain (--spread-delay, default 0 s)."
        ),
    )


_ONE_CARD_FRACTION = "a fractional request (milli below 1000) takes exactly one card: set count: 1"
"""The rule's message, the same from the API server's CEL check and from the operator's parse."""


class CardRequest(Model):
    """Accelerator cards for one pod: whole cards, or a fraction of one card."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=cel(
            # has(): the API server also checks the rule on the field's default ({}), before
            # nested defaults are filled in; an absent field is its default (1000, 1).
            "!has(self.milli) || self.milli == 1000 || !has(self.count) || self.count == 1",
            _ONE_CARD_FRACTION,
        )
    )

    count: int = Field(1, ge=0, le=64, description="count: cards per pod; 0 for a pod without cards (a launcher).")
    milli: int = Field(
        1000,
        ge=1,
        le=1000,
        description="milli: share of each card in milli-cards, 1..1000; 1000 is a whole card, 250 a quarter.",
    )
    memory_mib: int = Field(
        0,
        ge=0,
        le=4 * 1024 * 1024,
        alias="memoryMiB",
        description="memoryMiB: device memory per card in MiB; pods sharing a card never exceed its memory together.",
    )

    @pydantic.model_validator(mode="after")
    def _fraction_takes_one_card(self) -> CardRequest:
        if self.milli < 1000 and self.count != 1:
            raise ValueError(_ONE_CARD_FRACTION)
        return self


class Signal(enum.StrEnum):
    SIGTERM = "SIGTERM"
    SIGINT = "SIGINT"
    SIGHUP = "SIGHUP"
    SIGUSR1 = "SIGUSR1"
    SIGUSR2 = "SIGUSR2"


class Checkpoint(Model):
    """How a job saves its work before it is preempted."""

    grace_period_seconds: int = Field(
        30,
        ge=0,
        le=86_400,
        description="gracePeriodSeconds: seconds between the checkpoint signal and the kill; the pods' deletion grace.",
    )
    signal: Signal = Field(
        Signal.SIGTERM,
        description="signal: sent to each container's main process (PID 1) when preemption starts.",
    )


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A Kubernetes status condition (metav1.Condition)."""

    type: str = Field(description="type: the aspect, such as Scheduled.", max_length=316)
    status: ConditionStatus = Field(description="status: True, False or Unknown.")
    reason: str = Field(
        description="reason: PascalCase, machine-readable (InsufficientCapacity, TopologyFragmented, ...).",
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
    )
    message: str = Field("", description="message: a sentence with numbers, for humans.", max_length=32768)
    last_transition_time: str = Field(
        description="lastTransitionTime: when status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(None, ge=0, description="observedGeneration: the spec generation seen.")


class Placement(Model):
    """Where a workload's pods run."""

    pods: int = Field(0, ge=0, description="pods: pods placed.")
    cards: int = Field(0, ge=0, description="cards: cards held (a fraction counts as one card).")
    milli_cards: int = Field(0, ge=0, description="milliCards: card capacity held, in milli-cards.")
    nodes: list[str] = Field(default_factory=list, description="nodes: the nodes the pods run on, sorted.")
    islands: list[str] = Field(
        default_factory=list, description="islands: the islands (finest labelled topology level) spanned, sorted."
    )


class WorkloadStatus(Model):
    """Status of a TrainingJob or an InferenceService, written only by the operator."""

    phase: Phase = Field(Phase.PENDING, description="phase: Pending, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="conditions: Scheduled (with the scheduler's reason when False), Preempted, Failed, ...",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(None, ge=0, description="observedGeneration: the spec generation acted on.")
    placement: Placement | None = Field(None, description="placement: where the pods run; absent while pending.")
    start_time: str | None = Field(
        None,
        description="startTime: when the current placement started (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    completion_time: str | None = Field(
        None,
        description="completionTime: when the workload finished (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    restarts: int = Field(0, ge=0, description="restarts: whole-gang restarts after a failed pod or a lost node.")
    preemptions: int = Field(0, ge=0, description="preemptions: times the workload was preempted and requeued.")
    queued_time: str | None = Field(
        None,
        description="queuedTime: when the workload last entered the queue (RFC 3339); orders equal priorities.",
        json_schema_extra={"format": "date-time"},
    )


class TrainingJobStatus(WorkloadStatus):
    """Status of a TrainingJob: a workload's, and the nodes its next placement avoids."""

    avoid_nodes: list[str] = Field(
        default_factory=list,
        max_length=AVOID_NODES_MAX,
        description="avoidNodes: nodes the next placement avoids, set at a restart: where the failed pod ran, "
        "or the lost node.",
    )


def with_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` (JSON dicts) with the condition of ``type_`` set.

    ``lastTransitionTime`` moves only when ``status`` changes, as the Kubernetes API
    conventions ask; other conditions are kept in order.
    """
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    new = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        new["observedGeneration"] = generation
    if old is None:
        return [*conditions, new]
    return [new if c is old else c for c in conditions]
