"""The three kinds: AcceleratorPool (cluster-scoped), TrainingJob and InferenceService.

Each kind is a ``Kind`` record naming its spec and status models, its CRD names, its printer
columns and, for a workload, the longest ``metadata.name`` the names and labels of its pods
leave room for; ``archipelago.api.crd`` turns them into CustomResourceDefinitions.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any

import pydantic
from pydantic import Field

from archipelago.api import common, labels
from archipelago.cluster import topology

ModelName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")]


class Fabric(enum.StrEnum):
    NVLINK = "NVLink"
    HCCS = "HCCS"
    PCIE = "PCIe"


class LinkRule(common.Model):
    """How one card model's cards are wired inside a server, and the pod shapes that suit them."""

    model: ModelName = Field(description="model: the card model the rule applies to (Ascend910B, H800).")
    fabric: Fabric = Field(description="fabric: NVLink, HCCS or PCIe.")
    group_size: int = Field(
        ge=1, le=64, description="groupSize: cards per link group; cards [k*groupSize, (k+1)*groupSize) form group k."
    )
    strict: bool = Field(
        False, description="strict: a pod that fits in one group must sit in one group (HCCS rings); else preferred."
    )
    pod_sizes: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=list,
        max_length=16,
        description="podSizes: the card counts a pod may request on this model (empty: any). Ascend 910: 1, 2, 4, 8.",
    )
    large_pod: int = Field(
        0,
        ge=0,
        le=64,
        description="largePod: cards per pod when a job needs more than one server (Ascend 910: 8); 0: no rule.",
    )


class AcceleratorPoolSpec(common.Model):
    """A node pool of one device kind, and how its cards and islands are wired."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector: labels a node must carry to belong to the pool."
    )
    kind: common.DeviceKind = Field(description="kind: GPU or NPU.")
    resource_name: Annotated[str, Field(pattern=common.QUALIFIED_NAME, max_length=253)] = Field(
        description="resourceName: the device plugin's extended resource (nvidia.com/gpu, huawei.com/Ascend910)."
    )
    device_model: ModelName | None = Field(
        None,
        description=(
            "deviceModel: the card model of nodes whose labels name none (no archipelago.dev/device-model, "
            "nvidia.com/gpu.product or accelerator-type label)."
        ),
    )
    topology_levels: list[Annotated[str, Field(pattern=common.QUALIFIED_NAME, max_length=253)]] = Field(
        default_factory=lambda: [topology.SPINE, topology.ISLAND],
        max_length=8,
        description="topologyLevels: node label keys of the island levels, coarse to fine.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    link_rules: list[LinkRule] = Field(
        default_factory=list,
        max_length=32,
        description="linkRules: per card model, overriding the built-in rules (HCCS rings of 4, NVLink domains of 8).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["model"]},
    )
    fractional: bool = Field(
        False, description="fractional: whether inference replicas may share a card by milli-share and device memory."
    )


class PoolModel(common.Model):
    model: str = Field(description="model: a card model.")
    cards: int = Field(ge=0, description="cards: healthy cards of the model.")
    allocated_milli_cards: int = Field(0, ge=0, description="allocatedMilliCards: held by pods, in milli-cards.")


class AcceleratorPoolStatus(common.Model):
    nodes: int = Field(0, ge=0, description="nodes: ready nodes in the pool.")
    cards: int = Field(0, ge=0, description="cards: healthy cards in the pool.")
    allocated_milli_cards: int = Field(0, ge=0, description="allocatedMilliCards: card capacity held, in milli-cards.")
    models: list[PoolModel] = Field(default_factory=list, description="models: cards per model.")
    conditions: list[common.Condition] = Field(
        default_factory=list,
        description="conditions: Ready.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(None, ge=0, description="observedGeneration: the spec generation seen.")


DEVICE_MODELS_DOC = "deviceModels: card models the pods may run on (H800, Ascend910B); empty: any model of the pool."
POOL_DOC = "pool: the AcceleratorPool to run in; empty: any pool with an allowed model."
PRIORITY_DOC = "priorityClassName: a PriorityClass; its value orders the queue and decides preemption."


class ReplicaSet(common.Model):
    """One role of a training job: ``replicas`` identical pods."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=common.cel(
            "!has(self.minReplicas) || self.minReplicas <= self.replicas",
            "minReplicas must not exceed replicas",
        )
    )

    name: Annotated[str, Field(pattern=common.DNS_LABEL, max_length=24)] = Field(
        description="name: the role (launcher, worker); pods are named <job>-<name>-<index>."
    )
    replicas: int = Field(ge=1, le=4096, description="replicas: pods of this role.")
    min_replicas: int | None = Field(
        None, ge=0, le=4096, description="minReplicas: fewest pods of this role an elastic job runs with."
    )
    cards: common.CardRequest = Field(
        default_factory=common.CardRequest, description="cards: accelerator cards per pod of this role."
    )
    template: dict[str, Any] = Field(
        default_factory=dict,
        description="template: a PodTemplateSpec for the pods of this role.",
        json_schema_extra=common.PRESERVE_UNKNOWN,
    )


class TrainingJobSpec(common.Model):
    """A gang-scheduled training job: every pod runs, or none."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=common.cel(
            "!has(self.minMember) || self.minMember <= self.replicaSets.map(r, r.replicas).sum()",
            "minMember must not exceed the pods of all replicaSets together",
        )
    )

    replica_sets: list[ReplicaSet] = Field(
        min_length=1,
        max_length=8,
        description="replicaSets: the job's roles, in order; the last one (the workers) is the one that may shrink.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    device_models: list[ModelName] = Field(default_factory=list, max_length=16, description=DEVICE_MODELS_DOC)
    pool: Annotated[str, Field(max_length=253)] | None = Field(None, description=POOL_DOC)
    min_member: int | None = Field(
        None, ge=1, description="minMember: fewest pods the job runs with (gang scheduling); default: all pods."
    )
    topology: common.Topology | None = Field(None, description="topology: where the pods should sit together.")
    priority_class_name: Annotated[str, Field(max_length=253)] | None = Field(None, description=PRIORITY_DOC)
    preemptible: bool = Field(False, description="preemptible: whether higher-priority work may preempt the job.")
    suspend: bool = Field(False, description="suspend: true removes the pods and keeps the job; false requeues it.")
    backoff_limit: int = Field(
        3, ge=0, le=100, description="backoffLimit: whole-gang restarts after failures before the job fails."
    )
    checkpoint: common.Checkpoint = Field(
        default_factory=common.Checkpoint, description="checkpoint: how the job saves its work before preemption."
    )

    @pydantic.model_validator(mode="after")
    def _min_member_fits(self) -> TrainingJobSpec:
        """Mirrors the CRD's CEL rules, for objects that reach the operator without the API server's check."""
        pods = sum(r.replicas for r in self.replica_sets)
        if self.min_member is not None and self.min_member > pods:
            raise ValueError(f"minMember must not exceed the pods of all replicaSets together ({pods})")
        for r in self.replica_sets:
            if r.min_replicas is not None and r.min_replicas > r.replicas:
                raise ValueError(f"replicaSets[{r.name}].minReplicas must not exceed its replicas ({r.replicas})")
        return self


class InferenceServiceSpec(common.Model):
    """Inference replicas, each placed on its own, typically sharing cards by fraction."""

    replicas: int = Field(1, ge=0, le=1000, description="replicas: serving pods; 0 scales to zero.")
    template: dict[str, Any] = Field(
        default_factory=dict,
        description="template: a PodTemplateSpec for the serving pods.",
        json_schema_extra=common.PRESERVE_UNKNOWN,
    )
    cards: common.CardRequest = Field(
        default_factory=common.CardRequest,
        description="cards: accelerator cards per replica, typically a fraction: milli plus memoryMiB.",
    )
    device_models: list[ModelName] = Field(default_factory=list, max_length=16, description=DEVICE_MODELS_DOC)
    pool: Annotated[str, Field(max_length=253)] | None = Field(None, description=POOL_DOC)
    priority_class_name: Annotated[str, Field(max_length=253)] | None = Field(None, description=PRIORITY_DOC)
    preemptible: bool = Field(False, description="preemptible: whether higher-priority work may preempt replicas.")
    topology: common.Topology | None = Field(
        None, description="topology: where each replica's cards should sit (a multi-card replica)."
    )


LABEL_VALUE_MAX = 63
"""Characters in a label value, at most (Kubernetes' ``validation.LabelValueMaxLength``)."""
OBJECT_NAME_MAX = 253
"""Characters in a pod's name, at most (a DNS subdomain)."""


@dataclasses.dataclass(frozen=True)
class NameLimit:
    """The longest ``metadata.name`` of a workload kind, and which name or label of its pods sets it."""

    length: int
    why: str

    @property
    def problem(self) -> str:
        return f"must be at most {self.length} characters: {self.why}"

    @property
    def message(self) -> str:
        return f"metadata.name {self.problem}"

    @property
    def rule(self) -> dict[str, str]:
        """The CEL rule at the root of the kind's schema (a root rule may read ``self.metadata.name``)."""
        return {"rule": f"size(self.metadata.name) <= {self.length}", "message": self.message}


def _bound(model: type[common.Model], field: str, key: str) -> int:
    """The ``key`` bound (``le``, ``max_length``) of ``model.field``: the API's own, so a limit follows it."""
    for item in model.model_fields[field].metadata:
        if getattr(item, key, None) is not None:
            return getattr(item, key)
    raise ValueError(f"{model.__name__}.{field} has no {key} bound")


def _training_name_limit() -> NameLimit:
    """A TrainingJob's name is the job and gang label of its pods, and its pods' names start with it."""
    role, last = _bound(ReplicaSet, "name", "max_length"), _bound(ReplicaSet, "replicas", "le") - 1
    return min(
        NameLimit(
            LABEL_VALUE_MAX,
            f"it is the value of the {labels.JOB_NAME} and {labels.GANG} labels of the job's pods, "
            f"and a label value has at most {LABEL_VALUE_MAX} characters",
        ),
        NameLimit(
            OBJECT_NAME_MAX - len(f"-{'r' * role}-{last}"),
            f"its pods are named <name>-<replicaSet>-<index>, up to <name>-<{role} characters>-{last}, "
            f"and a pod name has at most {OBJECT_NAME_MAX} characters",
        ),
        key=lambda limit: limit.length,
    )


def _inference_name_limit() -> NameLimit:
    """An InferenceService's name is the job label of its pods, and the start of each one's gang label."""
    last = _bound(InferenceServiceSpec, "replicas", "le") - 1
    return min(
        NameLimit(
            LABEL_VALUE_MAX,
            f"it is the value of the {labels.JOB_NAME} label of its pods, and a label value has at most "
            f"{LABEL_VALUE_MAX} characters",
        ),
        NameLimit(
            LABEL_VALUE_MAX - len(f"-{last}"),
            f"the {labels.GANG} label of its pods is <name>-<replica index>, up to <name>-{last}, "
            f"and a label value has at most {LABEL_VALUE_MAX} characters",
        ),
        key=lambda limit: limit.length,
    )


@dataclasses.dataclass(frozen=True)
class Kind:
    """One custom resource kind: its models, CRD names and, for a workload, its ``NameLimit``."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    spec: type[common.Model]
    status: type[common.Model]
    columns: tuple[dict[str, str], ...]
    categories: tuple[str, ...] = ("archipelago",)
    name_limit: NameLimit | None = None

    @property
    def singular(self) -> str:
        return self.kind.lower()


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_WORKLOAD_COLUMNS = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Cards", "type": "integer", "jsonPath": ".status.placement.cards"},
    {"name": "Island", "type": "string", "jsonPath": ".status.placement.islands[0]"},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Scheduled")].reason'},
)

ACCELERATOR_POOL = Kind(
    kind="AcceleratorPool",
    plural="acceleratorpools",
    short_names=("apool",),
    namespaced=False,
    spec=AcceleratorPoolSpec,
    status=AcceleratorPoolStatus,
    columns=(
        {"name": "Kind", "type": "string", "jsonPath": ".spec.kind"},
        {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"},
        {"name": "Cards", "type": "integer", "jsonPath": ".status.cards"},
        {
            "name": "Allocated",
            "type": "integer",
            "jsonPath": ".status.allocatedMilliCards",
            "description": "milli-cards",
        },
        _AGE,
    ),
)
TRAINING_JOB = Kind(
    kind="TrainingJob",
    plural="trainingjobs",
    short_names=("tj",),
    namespaced=True,
    spec=TrainingJobSpec,
    status=common.TrainingJobStatus,
    columns=(*_WORKLOAD_COLUMNS, {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"}, _AGE),
    name_limit=_training_name_limit(),
)
INFERENCE_SERVICE = Kind(
    kind="InferenceService",
    plural="inferenceservices",
    short_names=("aisvc", "infsvc"),
    namespaced=True,
    spec=InferenceServiceSpec,
    status=common.WorkloadStatus,
    columns=(*_WORKLOAD_COLUMNS, _AGE),
    name_limit=_inference_name_limit(),
)
KINDS: tuple[Kind, ...] = (ACCELERATOR_POOL, TRAINING_JOB, INFERENCE_SERVICE)
