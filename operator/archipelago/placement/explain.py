"""A reason code and a sentence with numbers for every gang left waiting.

The checks run from the most permanent cause to the most passing one: a shape no card model
admits, no matching node, a gang bigger than the cluster or than any domain it requires, then
the state of this cycle (capacity taken by higher-priority gangs, not enough free cards even
with preemption, a required domain too fragmented, cards free but scattered). The numbers
count whole cards of the models the gang may use, on nodes it may use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

from archipelago import workload
from archipelago.cluster import devices, topology
from archipelago.cluster import ledger as ledger_
from archipelago.placement import fit, greedy, plan, pools, preempt
from archipelago.policies import scoring

Code = plan.ReasonCode


@dataclasses.dataclass
class _Need:
    cards: int
    what: str
    unit: str
    nodes: np.ndarray
    level: str | None


def reason(
    before: pools.State,
    after: pools.State,
    snapshot: plan.Snapshot,
    gang: workload.Gang,
    *,
    preemption_tried: bool,
    preemption_delay_s: float | None = None,
    preemption_exempt_s: float = 0.0,
    spread_delay_s: float | None = None,
) -> plan.Wait:
    """Why ``gang`` waits, given the state ``before`` this cycle's plan and ``after`` it.

    ``preemption_delay_s``: set when the gang could preempt but has not waited that long yet.
    ``preemption_exempt_s``: ``Config.preemption_exempt_s``, to tell victims not yet preemptible.
    ``spread_delay_s``: set when ``gang`` only prefers its level and is held to one domain of it
    (``Config.spread_delay_s``): a fragmented level then reads ``SPREAD_DELAYED``.

    ``before`` is used for a tentative placement and is left as it was.
    """
    wait, need, domains = _permanent(before, gang)
    if wait is not None:
        return wait
    assert need is not None
    if _fits_alone(before, gang):
        return _wait(
            gang,
            Code.HELD_FOR_HIGHER_PRIORITY,
            f"needs {need.what}; it fits the free capacity, but gangs of higher priority, or of equal "
            "priority that the queueing strategy starts first, took it this cycle",
        )
    free = after.whole  # wholly free cards per node
    victims = {pod for r in preempt.candidates(snapshot.running, gang, ()) for pod in r.pods}
    held = _held(after.ledger, victims)
    now = int(free[need.nodes].sum())
    total = int(held[need.nodes].sum())  # held by victims on matching nodes
    eligible = preempt.candidates(snapshot.running, gang, (), now=snapshot.now, exempt_s=preemption_exempt_s)
    exempt = victims - {pod for r in eligible for pod in r.pods}
    exempt_total = int(_held(after.ledger, exempt)[need.nodes].sum())
    if preemption_delay_s is not None and total:
        return _wait(
            gang,
            Code.PREEMPTION_DELAYED,
            f"needs {need.what}; {now}{need.unit} are free and {total} held by "
            f"lower-priority preemptible gangs; preemption is considered once it has waited "
            f"{preemption_delay_s:g} s",
        )
    if now < need.cards:
        if exempt_total and preemption_tried and now + total >= need.cards:
            return _wait(
                gang,
                Code.PREEMPTION_EXEMPT,
                f"needs {need.what}; {now}{need.unit} are free and {total} held by lower-priority "
                f"preemptible gangs, {exempt_total} of them by gangs that have run less than "
                f"{preemption_exempt_s:g} s, which are exempt from preemption until then",
            )
        if held.any() and preemption_tried:
            return _wait(
                gang,
                Code.PREEMPTION_INSUFFICIENT,
                f"needs {need.what}; {now}{need.unit} are free and the {total} held by lower-priority "
                "preemptible gangs were not enough",
            )
        return _wait(
            gang, Code.INSUFFICIENT_CAPACITY, f"needs {need.what}; {now}{need.unit} are free on matching nodes"
        )
    if domains is not None:
        largest, where = _largest(domains, free)
        if largest < need.cards:
            held_there = int(held[domains[where]].sum())
            tail = (
                f"; {held_there}{need.unit} held by lower-priority preemptible gangs were not enough"
                if preemption_tried and held_there
                else ""
            )
            message = (
                f"needs {need.what} in one {need.level}; largest free {need.level} has {largest}{need.unit} ({where})"
            )
            if spread_delay_s is None:
                return _wait(gang, Code.TOPOLOGY_FRAGMENTED, message + tail)
            spreads = f"; it prefers one {need.level} and spreads over several once it has waited {spread_delay_s:g} s"
            return _wait(gang, Code.SPREAD_DELAYED, message + tail + spreads)
    return _wait(
        gang,
        Code.NODE_FRAGMENTED,
        f"needs {need.what}; {now}{need.unit} are free on matching nodes, but too few together on one node "
        f"({_pod_shapes(gang)})",
    )


def permanent(state: pools.State, gang: workload.Gang) -> plan.Wait | None:
    """Why ``gang`` could not run on this cluster even empty, or None if it could: a shape no
    card model admits, no matching node, more cards than the matching nodes hold, or than any
    domain of the level it requires holds (``INVALID_SHAPE``, ``NO_MATCHING_NODES``,
    ``EXCEEDS_CLUSTER``, ``TOPOLOGY_TOO_SMALL``)."""
    return _permanent(state, gang)[0]


def _permanent(
    state: pools.State, gang: workload.Gang
) -> tuple[plan.Wait | None, _Need | None, dict[str, np.ndarray] | None]:
    """``permanent``'s answer, with the gang's need and the domains of its required level."""
    cluster = state.ledger.cluster
    wait = _static(state, gang)
    if wait is not None:
        return wait, None, None
    need = _need(state, gang)
    cards = cluster.derived("placement.explain.cards", _capacity_cards)
    capacity = int(cards[need.nodes].sum())
    if need.cards > capacity:
        message = f"needs {need.what}; matching nodes hold {capacity}{need.unit} in all"
        return _wait(gang, Code.EXCEEDS_CLUSTER, message), need, None
    domains = _domains(cluster, need)
    if domains is not None:
        largest, where = _largest(domains, cards)
        if need.cards > largest:
            largest_is = f"the largest {need.level} has {largest}{need.unit} ({where})"
            message = f"needs {need.what} in one {need.level}; {largest_is}"
            return _wait(gang, Code.TOPOLOGY_TOO_SMALL, message), need, domains
    return None, need, domains


def _wait(gang: workload.Gang, code: Code, message: str) -> plan.Wait:
    return plan.Wait(gang.name, code, message)


def _static(state: pools.State, gang: workload.Gang) -> plan.Wait | None:
    """Shape and matching-node checks, per pod set (a pool's nodes share their static facts)."""
    for pod_set in gang.pod_sets:
        pod = pod_set.request
        matching = [p.node for p in state.pools if scoring.eligible(p.node, pod)]
        models = ", ".join(sorted(pod.models)) or "any model"
        if not matching:
            avoided = ""
            if pod.avoid_nodes:
                avoided = f", and is not one of {_listed(pod.avoid_nodes)} avoided after a restart"
            return _wait(
                gang,
                Code.NO_MATCHING_NODES,
                f"pod set {pod_set.role}: no node has cards of {models} that matches its node selector, "
                f"tolerates the node's taints{avoided}",
            )
        errors = [fit.shape_error(n, pod, gang.cards) for n in matching]
        if all(errors):
            return _wait(gang, Code.INVALID_SHAPE, f"pod set {pod_set.role}: on {matching[0].model}, {errors[0]}")
    return None


def _listed(names: Iterable[str], most: int = 3) -> str:
    """Up to ``most`` names, sorted, and how many more."""
    names = sorted(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _need(state: pools.State, gang: workload.Gang) -> _Need:
    cards = sum(s.request.cards * lower for s, lower in zip(gang.pod_sets, gang.lower_bounds(), strict=True))
    eligible = {k for s in gang.pod_sets if s.request.cards for k in state.eligible(s.request, gang.cards)}
    nodes = np.sort(state.nodes_of(eligible))
    models = sorted({state.pools[k].node.model for k in eligible if state.pools[k].node.model})
    unit = f" x {models[0]}" if len(models) == 1 else " cards"
    request = gang.topology
    level = request.level if request is not None and request.required else None
    return _Need(cards, f"{cards}{unit}", unit, nodes, level)


def _domains(cluster, need: _Need) -> dict[str, np.ndarray] | None:
    """The nodes of each domain of a required level, named by their label value."""
    if need.level is None:
        return None
    domains: dict[str, list[int]] = {}
    depth = None if need.level in (topology.HOSTNAME, workload.LINK_GROUP) else cluster.topology.depth(need.level)
    for i in need.nodes.tolist():
        name = cluster.nodes[i].name if depth is None else cluster.path(i)[depth]
        domains.setdefault(name, []).append(i)
    if need.level == workload.LINK_GROUP:
        need.level = "link group"
    elif need.level == topology.HOSTNAME:
        need.level = "node"
    else:
        need.level = need.level.rsplit("/", 1)[-1]
    return {name: np.asarray(members) for name, members in domains.items()}


def _largest(domains: Mapping[str, np.ndarray], cards: np.ndarray) -> tuple[int, str]:
    """The domain with the most ``cards`` (per node), first by name among equals, and its count."""
    best, where = -1, ""
    for name, members in sorted(domains.items()):
        total = int(cards[members].sum())
        if total > best:
            best, where = total, name
    return best, where


def _capacity_cards(cluster) -> np.ndarray:
    """Healthy cards per node."""
    return np.array([n.capacity_milli // devices.MILLI_PER_CARD for n in cluster.nodes], dtype=np.int64)


def _held(ledger: ledger_.Ledger, pods: set[str]) -> np.ndarray:
    """Cards per node that these pods hold."""
    held = np.zeros(len(ledger.cluster), dtype=np.int64)
    for pod in pods:
        a = ledger.get(pod)
        if a is not None:
            held[a.node] += len(a.shares)
    return held


def _fits_alone(state: pools.State, gang: workload.Gang) -> bool:
    """Would the gang have fitted the free capacity before this cycle placed anything?

    The aggregate check of ``pools.State.fits`` (exact for power-of-two whole-card pods),
    over the pools it may use, or over each domain of a required level.
    """
    demand = [(s.request, lower) for s, lower in zip(gang.pod_sets, gang.lower_bounds(), strict=True)]
    eligible = state.gang_pools(gang)
    request = gang.topology
    if request is None or not request.required:
        return state.fits(demand, eligible)
    if request.level in (topology.HOSTNAME, workload.LINK_GROUP):
        return greedy.place_on_pools(state, gang, eligible) is not None
    depth = state.ledger.cluster.topology.depth(request.level)
    domains: dict[topology.DomainId, list[int]] = {}
    for k in eligible:
        if not state.pools[k].private:
            domains.setdefault(state.pools[k].domain(depth), []).append(k)
    return any(state.fits(demand, ks) for ks in domains.values())


def _pod_shapes(gang: workload.Gang) -> str:
    return ", ".join(f"{s.count} {s.role} pod(s) of {s.request.cards} cards" for s in gang.pod_sets if s.request.cards)
