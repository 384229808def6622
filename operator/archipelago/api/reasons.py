"""Condition types and reasons the operator writes, PascalCase, each declared once.

The scheduler's own wait reasons (``InsufficientCapacity``, ``TopologyFragmented``, ...) are
``archipelago.placement.plan.ReasonCode``; a ``Scheduled=False`` condition carries one of
those or one of the spec reasons below.
"""

import enum


class ConditionType(enum.StrEnum):
    SCHEDULED = "Scheduled"
    """True once the pods are placed; False with the reason the workload waits."""
    PREEMPTED = "Preempted"
    """True while the workload is being preempted or after it was, until it runs again."""
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"


class Reason(enum.StrEnum):
    PLACED = "Placed"
    PREEMPTING = "Preempting"
    """Lower-priority gangs are being preempted to make room; their grace period runs."""
    PREEMPTED = "Preempted"
    DRAINING = "Draining"
    """The pods are terminating (grace period); the workload is requeued when they are gone."""
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    SUCCEEDED = "Succeeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    POD_FAILED = "PodFailed"
    NODE_LOST = "NodeLost"
    GANG_INCOMPLETE = "GangIncomplete"
    """Fewer pods exist than the gang needs (an interrupted creation); they are removed and requeued."""
    POD_CREATION_FAILED = "PodCreationFailed"
    RESOURCE_QUOTA_EXCEEDED = "ResourceQuotaExceeded"
    """A namespace ResourceQuota refused a pod of the gang (HTTP 403 "exceeded quota"); retried each cycle."""
    DISRUPTION_BUDGET = "DisruptionBudget"
    """A PodDisruptionBudget forbids removing running pods a preemption or a restart needs gone; retried each cycle."""
    NO_ACCELERATOR_POOL = "NoAcceleratorPool"
    """No AcceleratorPool exists, so nothing is scheduled yet."""
    INVALID_SPEC = "InvalidSpec"
    UNKNOWN_PRIORITY_CLASS = "UnknownPriorityClass"
    UNKNOWN_DEVICE_MODEL = "UnknownDeviceModel"
    UNKNOWN_POOL = "UnknownPool"
    UNKNOWN_TOPOLOGY_LEVEL = "UnknownTopologyLevel"
    FRACTIONAL_NOT_ALLOWED = "FractionalNotAllowed"
