"""The solver-independent check of a plan: every rule a cycle's answer must keep.

It reads only the snapshot's ledger, the static fit rules (``scoring.eligible``,
``fit.shape_error``, the link groups of the cards) and the cluster topology. It shares no
code with the greedy placer, the CP-SAT model or the preemption search, so it catches their
mistakes instead of repeating them. It never mutates the snapshot: capacity is checked on a
copy of the ledger.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import nodes as nodes_
from archipelago.placement import fit
from archipelago.placement import plan as plan_
from archipelago.policies import scoring


class InvalidPlan(ValueError):
    """A plan that breaks at least one rule. ``violations`` holds one sentence per broken rule."""

    def __init__(self, violations: Iterable[str]) -> None:
        self.violations = tuple(violations)
        super().__init__(f"the plan breaks {len(self.violations)} rule(s):\n- " + "\n- ".join(self.violations))


def check(snapshot: plan_.Snapshot, pending: Iterable[workload.Gang], plan: plan_.Plan) -> None:
    """Raise ``InvalidPlan`` listing every violation of ``plan``; return None for a valid plan."""
    found = violations(snapshot, pending, plan)
    if found:
        raise InvalidPlan(found)


def violations(snapshot: plan_.Snapshot, pending: Iterable[workload.Gang], plan: plan_.Plan) -> list[str]:
    """Every rule ``plan`` breaks for the gangs ``pending`` on ``snapshot``, one sentence each.

    An empty list means the plan is valid: its evictions name whole preemptible gangs (or
    shrink elastic ones no further than their lower bounds) for strictly higher-priority gangs
    it places; every placed gang is pending, complete enough (``min_member`` and each pod set's
    lower bound), and each pod gets what it asks for on an eligible node, within its model's
    link rules and its required topology domain; every pending gang is placed or waits, never
    both; and evictions then placements fit the ledger without over-commit.
    """
    gangs = {gang.name: gang for gang in pending}
    return [
        *_evictions(snapshot, gangs, plan),
        *_placements(snapshot, gangs, plan),
        *_waits(gangs, plan),
        *_capacity(snapshot, plan),
    ]


def _evictions(snapshot: plan_.Snapshot, gangs: Mapping[str, workload.Gang], plan: plan_.Plan) -> list[str]:
    found: list[str] = []
    evicted: dict[str, list[str]] = collections.defaultdict(list)
    partial: set[str] = set()
    for e in plan.evictions:
        where = f"eviction of gang {e.gang}"
        running = snapshot.running.get(e.gang)
        if running is None:
            found.append(f"{where}: no such gang is running")
            continue
        victim = running.gang
        if not victim.preemptible:
            found.append(f"{where}: the gang is not preemptible")
        for pod in e.pods:
            if pod not in running.pods:
                found.append(f"{where}: pod {pod} is not one of its running pods")
            elif pod not in snapshot.ledger:
                found.append(f"{where}: pod {pod} holds no allocation in the ledger")
            if pod in evicted[e.gang]:
                found.append(f"{where}: pod {pod} is evicted twice")
            evicted[e.gang].append(pod)
        if e.whole:
            kept = sorted(set(running.pods) - set(e.pods))
            if kept:
                found.append(f"{where}: a whole eviction leaves pods {kept} running")
        else:
            partial.add(e.gang)
            if not victim.elastic:
                found.append(f"{where}: only an elastic gang can lose part of its pods, and it is not elastic")
        if e.lost_card_seconds < 0:
            found.append(f"{where}: lost work must not be negative, got {e.lost_card_seconds} card-seconds")
        beneficiary = gangs.get(e.for_gang)
        if beneficiary is None or e.for_gang not in plan.placed:
            found.append(f"{where}: it makes room for gang {e.for_gang}, which this plan does not place")
        elif beneficiary.priority <= victim.priority:
            found.append(
                f"{where}: gang {e.for_gang} has priority {beneficiary.priority}, "
                f"not above the victim's {victim.priority}"
            )
    for name in sorted(partial):
        running = snapshot.running[name]
        if running.gang.elastic:
            kept = [pod for pod in running.pods if pod not in evicted[name]]
            found.extend(_shortfall(running.gang, kept, f"gang {name} after its partial eviction"))
    return found


def _placements(snapshot: plan_.Snapshot, gangs: Mapping[str, workload.Gang], plan: plan_.Plan) -> list[str]:
    found: list[str] = []
    for name, allocations in plan.placed.items():
        gang = gangs.get(name)
        if gang is None:
            found.append(f"gang {name} is placed but is not pending")
            continue
        if name in snapshot.running:
            found.append(f"gang {name} is placed but is already running")
        requests = {pod.name: pod for pod in gang.pods()}
        seen: set[str] = set()
        for a in allocations:
            request = requests.get(a.pod)
            if request is None:
                found.append(f"gang {name}: pod {a.pod} is not one of its pods")
            elif a.pod in seen:
                found.append(f"gang {name}: pod {a.pod} is placed twice")
            else:
                seen.add(a.pod)
                found.extend(_allocation(snapshot, gang, request, a))
        found.extend(_shortfall(gang, seen, f"gang {name} as placed"))
        found.extend(_together(snapshot, gang, [a for a in allocations if a.pod in requests]))
    return found


def _allocation(
    snapshot: plan_.Snapshot, gang: workload.Gang, pod: workload.PodRequest, a: ledger_.Allocation
) -> list[str]:
    """What is wrong with allocation ``a`` of ``pod``, apart from free capacity."""
    where = f"gang {gang.name}: pod {pod.name}"
    found: list[str] = []
    if a.cpu_milli != pod.cpu_milli or a.memory_mib != pod.memory_mib:
        found.append(
            f"{where} holds {a.cpu_milli} milli-cpu and {a.memory_mib} MiB, "
            f"but asks for {pod.cpu_milli} and {pod.memory_mib}"
        )
    if len(a.shares) != pod.cards:
        found.append(f"{where} holds {len(a.shares)} cards, but asks for {pod.cards}")
    wrong = [s.card for s in a.shares if (s.milli, s.memory_mib) != (pod.milli_per_card, pod.device_memory_mib)]
    if wrong:
        found.append(
            f"{where}: cards {wrong} are not shares of {pod.milli_per_card} milli "
            f"and {pod.device_memory_mib} MiB of device memory"
        )
    nodes = snapshot.ledger.cluster.nodes
    if not 0 <= a.node < len(nodes):
        return [*found, f"{where} is on node index {a.node}, which does not exist"]
    node = nodes[a.node]
    where = f"{where} on node {node.name}"
    if not scoring.eligible(node, pod):
        found.append(f"{where}: the node is not eligible (card model, resource, node selector or taints)")
    error = fit.shape_error(node, pod, gang.cards)
    if error is not None:
        found.append(f"{where} breaks the link rules: {error}")
    rules = fit.links(node)
    groups = _link_groups(node, a)
    if rules.strict and pod.cards <= rules.group_size and len(groups) > 1:
        found.append(
            f"{where}: a pod of {pod.cards} cards must sit in one link group of {rules.group_size}, "
            f"but spans groups {sorted(groups)}"
        )
    return found


def _together(snapshot: plan_.Snapshot, gang: workload.Gang, allocations: list[ledger_.Allocation]) -> list[str]:
    """What breaks the gang's required topology: all its pods in one domain of the level."""
    request = gang.topology
    if request is None or not request.required:
        return []
    cluster = snapshot.ledger.cluster
    used = sorted({a.node for a in allocations if 0 <= a.node < len(cluster.nodes)})
    names = [cluster.nodes[i].name for i in used]
    if request.level == workload.LINK_GROUP:
        groups = {(a.node, g) for a in allocations if a.node in used for g in _link_groups(cluster.nodes[a.node], a)}
        if len(used) > 1 or len(groups) > 1:
            return [
                f"gang {gang.name} requires one link group of one node, "
                f"but spans nodes {names} and {len(groups)} link groups"
            ]
        return []
    try:
        domains = {cluster.topology.domain(cluster.nodes[i], request.level) for i in used}
    except ValueError as error:
        return [f"gang {gang.name} requires one domain of level {request.level}: {error}"]
    if len(domains) > 1:
        spans = sorted("/".join(d) for d in domains)
        return [f"gang {gang.name} requires one domain of level {request.level}, but nodes {names} span {spans}"]
    return []


def _shortfall(gang: workload.Gang, pods: Collection[str], what: str) -> list[str]:
    """Sentences for every bound ``pods`` (names of the gang's pods) fall short of."""
    found: list[str] = []
    if len(pods) < gang.min_member:  # type: ignore[operator]
        found.append(f"{what} has {len(pods)} pods, fewer than its min_member {gang.min_member}")
    roles = {pod.name: pod.role for pod in gang.pods()}
    counts = collections.Counter(roles.get(pod) for pod in pods)
    for pod_set, bound in zip(gang.pod_sets, gang.lower_bounds(), strict=True):
        if counts[pod_set.role] < bound:
            found.append(f"{what} has {counts[pod_set.role]} {pod_set.role} pods, fewer than its lower bound {bound}")
    return found


def _waits(gangs: Mapping[str, workload.Gang], plan: plan_.Plan) -> list[str]:
    found: list[str] = []
    for name, wait in plan.waiting.items():
        if name in plan.placed:
            found.append(f"gang {name} is both placed and waiting")
        if name not in gangs:
            found.append(f"gang {name} waits but is not pending")
        if wait.gang != name:
            found.append(f"the wait filed under gang {name} names gang {wait.gang}")
    for name in gangs:
        if name not in plan.placed and name not in plan.waiting:
            found.append(f"gang {name} is pending but neither placed nor given a reason to wait")
    return found


def _capacity(snapshot: plan_.Snapshot, plan: plan_.Plan) -> list[str]:
    """Over-commit: the plan's evictions, then its placements, applied to a copy of the ledger."""
    ledger = snapshot.ledger.copy()
    for e in plan.evictions:
        running = snapshot.running.get(e.gang)
        for pod in e.pods:
            if running is not None and pod in running.pods and pod in ledger:
                ledger.release(pod)
    found: list[str] = []
    for name, allocations in plan.placed.items():
        for a in allocations:
            try:
                ledger.allocate(a)
            except ledger_.CapacityError as error:
                found.append(f"gang {name} over-commits: {error}")
    return found


def _link_groups(node: nodes_.Node, a: ledger_.Allocation) -> set[int]:
    """The link groups of the node's cards that ``a`` holds (cards that do not exist are skipped)."""
    return {node.devices[s.card].link_group for s in a.shares if 0 <= s.card < len(node.devices)}
