"""``archipelago explain``: why a workload is where it is, or why it waits, in plain words.

Pure: renders an object and its Events (plain dicts) as text. The reason codes are the
scheduler's (``placement.plan.ReasonCode``) and the operator's (``api.reasons.Reason``); each
gets a hint on what would change the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archipelago.api import reasons
from archipelago.placement import plan

Code = plan.ReasonCode
Reason = reasons.Reason

HINTS: dict[str, str] = {
    Code.INVALID_SHAPE: "ask for a card count the model's link rules allow (Ascend 910: 1, 2, 4 or 8 per pod)",
    Code.NO_MATCHING_NODES: "check spec.deviceModels, spec.pool, the template's nodeSelector and tolerations",
    Code.EXCEEDS_CLUSTER: "the job is larger than every matching node together: shrink it or add nodes",
    Code.TOPOLOGY_TOO_SMALL: "no domain of the required level is that big: use a coarser level or Preferred",
    Code.INSUFFICIENT_CAPACITY: "it runs when running work finishes; a higher priority would let it preempt",
    Code.TOPOLOGY_FRAGMENTED: "free cards are spread over several domains; it runs when one frees up, or use Preferred",
    Code.NODE_FRAGMENTED: "free cards are spread so no node holds a pod; smaller pods would fit now",
    Code.PREEMPTION_INSUFFICIENT: "even evicting every lower-priority preemptible gang would not make room",
    Code.PREEMPTION_DELAYED: "capacity may free by itself; it preempts if still waiting after the preemption delay",
    Code.PREEMPTION_EXEMPT: "the gangs it would preempt have only just started; it preempts once their exemption ends",
    Code.SPREAD_DELAYED: "it waits a while for one domain of its preferred level, then spreads over several",
    Code.HELD_FOR_HIGHER_PRIORITY: "higher-priority gangs, or those the queueing strategy starts first, took the room",
    Reason.PREEMPTING: "lower-priority gangs are checkpointing; it starts when their grace period ends",
    Reason.UNKNOWN_PRIORITY_CLASS: "create the PriorityClass or fix spec.priorityClassName",
    Reason.UNKNOWN_DEVICE_MODEL: "fix spec.deviceModels to a model an AcceleratorPool's nodes carry",
    Reason.UNKNOWN_POOL: "create the AcceleratorPool or fix spec.pool",
    Reason.NO_ACCELERATOR_POOL: "an admin creates an AcceleratorPool selecting the GPU/NPU nodes",
    Reason.UNKNOWN_TOPOLOGY_LEVEL: "use a level from the pool's topologyLevels, kubernetes.io/hostname or link-group",
    Reason.FRACTIONAL_NOT_ALLOWED: "set fractional: true on a pool, or ask for whole cards",
    Reason.INVALID_SPEC: "fix the field named; the job stays Failed until its spec changes",
    Reason.BACKOFF_LIMIT_EXCEEDED: "look at the failed pods' logs; raise spec.backoffLimit to retry more",
    Reason.POD_CREATION_FAILED: "the API server refused a pod; its message names the field",
    Reason.RESOURCE_QUOTA_EXCEEDED: "the namespace ResourceQuota is used up; it starts when pods end or it grows",
    Reason.DISRUPTION_BUDGET: "the PodDisruptionBudget named allows no more disruptions; it goes on once it does",
}


def render(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    """A few lines for a person: phase, placement, each condition with a hint, recent Events."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    lines = [f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}: {status.get('phase', 'Pending (not yet seen)')}"]
    placement = status.get("placement")
    if placement:
        islands = ", ".join(placement.get("islands") or ()) or "no labelled island"
        lines.append(
            f"  runs {placement.get('pods', 0)} pods with {placement.get('cards', 0)} cards "
            f"on {len(placement.get('nodes') or ())} nodes ({', '.join(placement.get('nodes') or ())}) in {islands}"
        )
    for key, label in (("restarts", "restarts"), ("preemptions", "preemptions")):
        if status.get(key):
            lines.append(f"  {label}: {status[key]}")
    if status.get("avoidNodes"):
        lines.append(f"  avoids nodes (from its last restart): {', '.join(status['avoidNodes'])}")
    for c in status.get("conditions") or ():
        lines.append(f"  {c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message', '')}")
        hint = HINTS.get(c.get("reason", "")) if c.get("status") != "True" or c.get("type") == "Failed" else None
        if hint:
            lines.append(f"    hint: {hint}")
    if events:
        lines.append("  events (newest last):")
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")[-10:]:
            lines.append(
                f"    {e.get('lastTimestamp', '')} {e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}"
            )
    return "\n".join(lines)
