"""The status bodies the operator writes, built from one cycle's values. Pure: no API calls.

Units: cards in whole cards, shares in milli-cards; times are RFC 3339 strings.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from archipelago import cluster as cluster_
from archipelago import inventory, queueing
from archipelago.api import common
from archipelago.cluster import ledger as ledger_


@dataclasses.dataclass
class Draft:
    """A workload's status as this cycle will leave it, and the Events to record.

    ``events`` holds ``(type, reason, message)``; ``patch()`` is the write due, ``{}`` for none.
    """

    workload: queueing.Workload
    status: dict[str, Any]
    original: dict[str, Any]
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, w: queueing.Workload) -> Draft:
        status = w.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        # What the server holds is only what was set: a default (phase Pending) not yet written
        # must be in the patch.
        written = w.status.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
        return cls(w, status, written)

    def patch(self) -> dict[str, Any]:
        """The merge patch (RFC 7386) from the status read to this one: only what this cycle changed.

        A field it removed (``placement`` after success or preemption) is an explicit null, as only
        that deletes it; a field it left alone is not written, so a status read from a watch that
        lags behind the operator's own last write (an older ``restarts``) is never written back.
        """
        return merge_patch(self.original, self.status)

    def condition(self, type_: str, status: str, reason: str, message: str, now: str, event: str = "") -> None:
        """Set a condition; record an Event of type ``event`` when its status, reason or message changes."""
        old = next((c for c in self.status.get("conditions", ()) if c["type"] == type_), None)
        self.status["conditions"] = common.with_condition(
            self.status.get("conditions", []),
            type_,
            status,
            reason,
            message,
            now=now,
            generation=self.workload.generation,
        )
        if event and (old is None or (old["status"], old["reason"], old["message"]) != (status, reason, message)):
            self.events.append((event, reason, message))


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new``: changed keys, None for removed ones,
    recursing into nested mappings; ``{}`` when they are equal."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if value == before:
            continue
        patch[key] = merge_patch(before, value) if isinstance(value, Mapping) and isinstance(before, Mapping) else value
    return patch


_ABSENT = object()


def usage(ledger: ledger_.Ledger) -> dict[tuple[str, str], tuple[int, int]]:
    """(pool, card model) to (healthy capacity, held by pods), both in milli-cards."""
    totals: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    for i, node in enumerate(ledger.cluster.nodes):
        if node.devices:
            t = totals[(node.pool, node.model or "")]
            t[0] += node.capacity_milli
            t[1] += node.capacity_milli - int(ledger.free_milli[i])
    return {key: (capacity, held) for key, (capacity, held) in totals.items()}


def pool(
    body: Mapping[str, Any],
    facts: inventory.PoolFacts | None,
    used: Mapping[tuple[str, str], tuple[int, int]],
    now: str,
) -> dict[str, Any]:
    """An AcceleratorPool's status: ready nodes, healthy cards and what pods hold, per model.

    ``facts`` is None for a pool whose spec does not parse.
    """
    meta = body["metadata"]
    held = {model: h for (name, model), (_, h) in used.items() if name == meta["name"]}
    status: dict[str, Any] = {
        "nodes": facts.nodes if facts else 0,
        "cards": facts.cards if facts else 0,
        "allocatedMilliCards": sum(held.values()),
        "models": [
            {"model": m, "cards": n, "allocatedMilliCards": held.get(m, 0)}
            for m, n in sorted((facts.models if facts else {}).items())
        ],
        "observedGeneration": meta.get("generation", 1),
    }
    if facts is None:
        ready = ("False", "InvalidSpec", "the pool's spec does not parse; see the operator log")
    elif not facts.nodes:
        lost = ", ".join(facts.lost) or "none"
        ready = ("False", "NoNodes", f"no Ready node matches the nodeSelector; NotReady: {lost}")
    else:
        lost = f"; NotReady: {', '.join(facts.lost)}" if facts.lost else ""
        ready = ("True", "NodesReady", f"{facts.nodes} nodes with {facts.cards} healthy cards{lost}")
    old = (body.get("status") or {}).get("conditions") or []
    status["conditions"] = common.with_condition(list(old), "Ready", *ready, now=now, generation=meta.get("generation"))
    return status


def placement(allocations: Sequence[ledger_.Allocation], cluster: cluster_.Cluster) -> dict[str, Any]:
    nodes = sorted({cluster.nodes[a.node].name for a in allocations})
    islands = sorted({cluster.path(a.node)[-2] for a in allocations if len(cluster.path(a.node)) > 1})
    return {
        "pods": len(allocations),
        "cards": sum(len(a.shares) for a in allocations),
        "milliCards": sum(a.milli for a in allocations),
        "nodes": nodes,
        "islands": [i for i in islands if i and not i.startswith("<")],
    }


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "pods": a["pods"] + b["pods"],
        "cards": a["cards"] + b["cards"],
        "milliCards": a["milliCards"] + b["milliCards"],
        "nodes": sorted({*a["nodes"], *b["nodes"]}),
        "islands": sorted({*a["islands"], *b["islands"]}),
    }


def rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
