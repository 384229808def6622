"""Victim search: the cheapest set of lower-priority evictions that lets one gang run.

For one pending gang the search builds a small CP-SAT model over the nodes it may use:

* ``x[r, n]``: pods of pod set ``r`` on node ``n``;
* ``p[v]``: running gang ``v`` evicted whole; ``q[v, pod]``: that pod released. A gang that is
  not elastic loses all its pods or none. An elastic gang may instead shrink, keeping at
  least ``min_member`` pods and each pod set's lower bound;
* per node and slot size ``s``: ``s * slots <= free whole cards + cards released`` (per link
  group where the model's rules are strict), and the gang's pods of ``s`` cards or more use
  no more slots than that; cpu, memory and milli-cards likewise.

Victims are running, ``preemptible`` gangs of strictly lower priority that have run at least
``Config.preemption_exempt_s`` since their latest start. The cost is the work
thrown away: for every released pod, its cards times the seconds since the gang started or
last checkpointed (card-seconds), plus a tie-break of one per gang evicted whole, so among
equal losses fewer victims win. The model minimises that cost, so the set is minimal in cost
(proven when the solver reports OPTIMAL). The plan is then decoded onto cards with
``fit.choose``; if it does not decode, nothing is evicted.

Before any model, a numpy check (``_Room``) keeps only nodes that could take one of the
gang's pods or hold a candidate's, and gives up when even evicting every candidate leaves no
room (in one domain, for a gang that requires one). On a busy 10,000-card cluster most
searches end there, in one or two milliseconds, instead of in a proof of infeasibility. A gang
that prefers one domain is searched inside one first (see ``search``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Mapping

import numpy as np
from ortools.sat.python import cp_model

from archipelago import workload
from archipelago.cluster import devices, topology
from archipelago.cluster import ledger as ledger_
from archipelago.placement import fit, plan, pools
from archipelago.policies import scoring

_SCALE = 1000
"""Cost units per card-second, so the victim-count tie-break stays below one card-second."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Evictions and the gang's allocations that follow them, or why none were found."""

    evictions: tuple[plan.Eviction, ...]
    allocations: tuple[ledger_.Allocation, ...]
    status: str


def exempt_until(running: plan.Running, exempt_s: float) -> float:
    """When (s) ``running`` may first be preempted: ``exempt_s`` (``Config.preemption_exempt_s``)
    after its latest start."""
    return running.started_at + exempt_s


def candidates(
    running: Mapping[str, plan.Running],
    gang: workload.Gang,
    spared: Collection[str],
    *,
    now: float = math.inf,
    exempt_s: float = 0.0,
) -> list[plan.Running]:
    """Running gangs ``gang`` may preempt at ``now`` (s): preemptible, lower priority, not in
    ``spared``, and started at least ``exempt_s`` seconds before ``now`` (``Config.preemption_exempt_s``)."""
    return [
        r
        for name, r in sorted(running.items())
        if r.gang.preemptible
        and r.gang.priority < gang.priority
        and name not in spared
        and r.pods
        and exempt_until(r, exempt_s) <= now
    ]


def search(
    state: pools.State,
    snapshot: plan.Snapshot,
    gang: workload.Gang,
    spared: Collection[str],
    config: plan.Config,
    seconds: float,
) -> Outcome | None:
    """Find and apply to ``state`` the cheapest evictions that let ``gang`` run whole.

    A gang that requires one domain gets one. A gang that prefers one first looks for the
    cheapest evictions inside one domain of its level, with half the time, and only then
    across domains: fewer islands spanned come before fewer preemptions in the objective. A
    gang without a topology request gets the cheapest evictions wherever they are. Returns
    None (``state`` unchanged) when no candidate set makes room within ``seconds``.
    """
    started = time.perf_counter()
    ledger = state.ledger
    victims = candidates(snapshot.running, gang, spared, now=snapshot.now, exempt_s=config.preemption_exempt_s)
    if not victims:
        return None
    holdings = {v.gang.name: [a for a in (ledger.get(pod) for pod in v.pods) if a is not None] for v in victims}
    room = _Room(state, gang, holdings)
    request = gang.topology
    if request is not None and request.required:
        if not room.in_one(request.level):
            return None  # not even every candidate together makes room in one domain
        return _solve(state, snapshot, gang, victims, holdings, room.allowed, request.level, config, seconds)
    if not room.in_one(None):
        return None  # not even every candidate together makes room
    if request is not None and gang.size > 1 and room.in_one(request.level):
        outcome = _solve(state, snapshot, gang, victims, holdings, room.allowed, request.level, config, seconds / 2)
        if outcome is not None:
            return outcome
    left = seconds - (time.perf_counter() - started)
    return _solve(state, snapshot, gang, victims, holdings, room.allowed, None, config, left)


def _solve(
    state: pools.State,
    snapshot: plan.Snapshot,
    gang: workload.Gang,
    victims: list[plan.Running],
    holdings: Mapping[str, list[ledger_.Allocation]],
    allowed: list[set[int]],
    level: str | None,
    config: plan.Config,
    seconds: float,
) -> Outcome | None:
    """The victim model over the ``allowed`` nodes (all in one domain of ``level``, unless None):
    solve it within ``seconds`` and apply the result to ``state``, or return None."""
    started = time.perf_counter()
    ledger = state.ledger
    nodes = sorted(set().union(*allowed))
    node_set = set(nodes)
    model = cp_model.CpModel()
    # Victims: whole-gang literals and per-pod release literals.
    released: dict[int, list[tuple[ledger_.Allocation, cp_model.LinearExprT]]] = {}
    cost_terms: list[cp_model.LinearExprT] = []
    whole: dict[str, cp_model.IntVar] = {}
    release: dict[str, cp_model.LinearExprT] = {}
    for victim in victims:
        name = victim.gang.name
        p = whole[name] = model.new_bool_var(f"p_{name}")
        progress = victim.progress_since(snapshot.now)
        held = holdings[name]
        cost_terms.append(p)
        if not victim.gang.elastic:
            model.add_hint(p, 0)
            cost_terms.append(_SCALE * math.ceil(sum(len(a.shares) for a in held) * progress) * p)
            for a in held:
                release[a.pod] = p
                if a.node in node_set:
                    released.setdefault(a.node, []).append((a, p))
            continue
        roles = {victim.gang.pod(s, i).name: s.role for s in victim.gang.pod_sets for i in range(s.count)}
        by_role: dict[str, list[cp_model.IntVar]] = {}
        for a in held:
            q = model.new_bool_var(f"q_{a.pod}")
            model.add(q >= p)
            model.add_hint(q, 0)
            release[a.pod] = q
            by_role.setdefault(roles[a.pod], []).append(q)
            cost_terms.append(_SCALE * math.ceil(len(a.shares) * progress) * q)
            if a.node in node_set:
                released.setdefault(a.node, []).append((a, q))
        keep_total = len(held) - victim.gang.min_member  # type: ignore[operator]
        model.add(sum(release[a.pod] for a in held) <= max(0, keep_total) + len(held) * p)
        for pod_set, lower in zip(victim.gang.pod_sets, victim.gang.lower_bounds(), strict=True):
            qs = by_role.get(pod_set.role, [])
            model.add(sum(qs) <= max(0, len(qs) - lower) + len(qs) * p)
    # The gang: pods per node, all-or-nothing (it must run).
    x: list[dict[int, cp_model.IntVar]] = []
    for pod_set, lower, where in zip(gang.pod_sets, gang.lower_bounds(), allowed, strict=True):
        xs = {i: model.new_int_var(0, pod_set.count, f"x_{pod_set.role}_{i}") for i in sorted(where)}
        model.add(sum(xs.values()) >= lower)
        model.add(sum(xs.values()) <= pod_set.count)
        x.append(xs)
    model.add(sum(v for xs in x for v in xs.values()) >= gang.min_member)  # type: ignore[operator]
    if level is not None:
        _add_one_domain(model, ledger.cluster, level, gang, nodes, x)
    for i in nodes:
        _add_node(model, state, gang, i, x, released.get(i, []))
    model.minimize(sum(cost_terms))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, seconds - (time.perf_counter() - started))
    solver.parameters.num_workers = config.workers
    solver.parameters.random_seed = config.seed
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    evictions = []
    for victim in victims:
        pods = tuple(pod for pod in victim.pods if pod in release and solver.value(release[pod]))
        if not pods:
            continue
        is_whole = bool(solver.value(whole[victim.gang.name])) or len(pods) == len(victim.pods)
        cards = sum(len(ledger.get(pod).shares) for pod in pods)  # type: ignore[union-attr]
        lost = cards * victim.progress_since(snapshot.now)
        evictions.append(plan.Eviction(victim.gang.name, victim.pods if is_whole else pods, is_whole, lost, gang.name))
    counts = [{i: int(solver.value(v)) for i, v in xs.items() if solver.value(v)} for xs in x]
    return _apply(state, gang, evictions, counts, solver.status_name(status))


class _Room:
    """Where evictions could let the gang run, and whether there is room enough, checked with
    numpy before any model is built: a necessary condition.

    ``allowed[r]``: the nodes of pod set ``r`` that are eligible and either hold a candidate's
    pods or fit one pod of the set as they are; a node with neither takes none, so leaving it
    out loses no solution. ``in_one(level)``: whether, with every candidate evicted, the
    allowed nodes of some domain at ``level`` (all of them, for None) hold the gang's
    milli-cards and, per pod set of whole cards, its lower bound of pods, each node counted
    as its free and freed whole cards over the pod's cards (link groups aside, an upper bound
    on the pods it takes).
    """

    def __init__(self, state: pools.State, gang: workload.Gang, holdings: Mapping[str, list[ledger_.Allocation]]):
        ledger = state.ledger
        self.cluster, self.gang, n = ledger.cluster, gang, len(ledger.cluster)
        at = [a.node for held in holdings.values() for a in held]
        freed = np.bincount(at, [a.milli for held in holdings.values() for a in held], minlength=n)
        whole_shares = [
            sum(1 for sh in a.shares if sh.milli == devices.MILLI_PER_CARD) for held in holdings.values() for a in held
        ]
        self.whole = state.whole + np.bincount(at, whole_shares, minlength=n).astype(np.int64)
        self.available = ledger.free_milli + freed
        hosts = np.bincount(at, minlength=n) > 0
        cpu, memory = np.asarray(ledger.cpu_free), np.asarray(ledger.memory_free)
        self.nodes: list[np.ndarray] = []
        for pod_set in gang.pod_sets:
            pod = pod_set.request
            eligible = state.nodes_of(state.eligible(pod, gang.cards))
            fits_now = (ledger.free_milli[eligible] >= pod.milli) & (cpu[eligible] >= pod.cpu_milli)
            self.nodes.append(eligible[hosts[eligible] | (fits_now & (memory[eligible] >= pod.memory_mib))])
        self.allowed = [set(where.tolist()) for where in self.nodes]

    def in_one(self, level: str | None) -> bool:
        cluster, gang = self.cluster, self.gang
        ids = np.zeros(len(cluster), dtype=np.int64) if level is None else _domain_ids(cluster, level)
        domains = int(ids.max()) + 1 if len(ids) else 0
        room = np.ones(domains, dtype=bool)
        need = 0
        for pod_set, lower, where in zip(gang.pod_sets, gang.lower_bounds(), self.nodes, strict=True):
            pod = pod_set.request
            need += pod.milli * lower
            if lower and pod.cards and not pod.sharing:
                room &= np.bincount(ids[where], self.whole[where] // pod.cards, minlength=domains) >= lower
        union = np.unique(np.concatenate(self.nodes)) if self.nodes else np.empty(0, dtype=np.int64)
        room &= np.bincount(ids[union], self.available[union], minlength=domains) >= need
        return bool(union.size) and bool(room.any())


def _domain_ids(cluster, level: str) -> np.ndarray:
    """Each node's domain number at ``level``; a link group lies inside one node, so its node's."""
    return cluster.domain_ids(topology.HOSTNAME if level == workload.LINK_GROUP else level)


def _add_one_domain(model: cp_model.CpModel, cluster, level: str, gang: workload.Gang, nodes, x) -> None:
    """Every pod of the gang in one domain of ``level`` (one node for hostname and link group)."""
    ids = _domain_ids(cluster, level)
    z = {d: model.new_bool_var(f"z{d}") for d in sorted({int(ids[i]) for i in nodes})}
    model.add_exactly_one(z.values())
    for r, xs in enumerate(x):
        count = gang.pod_sets[r].count
        for i, v in xs.items():
            model.add(v <= count * z[int(ids[i])])


def _add_node(model: cp_model.CpModel, state: pools.State, gang, i: int, x, released) -> None:
    """Node ``i``'s capacity for the gang's pods, counting what evictions would free there."""
    ledger = state.ledger
    node = ledger.cluster.nodes[i]
    on_node = [(gang.pod_sets[r].request, xs[i]) for r, xs in enumerate(x) if i in xs]
    if not on_node:
        return
    for attr, free in (("cpu_milli", ledger.cpu_free[i]), ("memory_mib", ledger.memory_free[i])):
        need = [(v, getattr(pod, attr)) for pod, v in on_node if getattr(pod, attr)]
        if need:
            gain = [(lit, getattr(a, attr)) for a, lit in released if getattr(a, attr)]
            model.add(_sum(need) <= free + _sum(gain))
    need_milli = [(v, pod.milli) for pod, v in on_node if pod.milli]
    if need_milli:
        model.add(_sum(need_milli) <= int(ledger.free_milli[i]) + _sum([(lit, a.milli) for a, lit in released]))
    rules = fit.links(node)
    whole = [(pod, v) for pod, v in on_node if pod.cards and not pod.sharing]
    if not whole:
        return
    free_groups = fit.whole_free(ledger, i)
    size, whole_card = rules.group_size, devices.MILLI_PER_CARD
    for s in state.sizes:
        demand = [(v, pools.slot_demand(pod.cards, s)) for pod, v in whole if pod.cards >= s]
        if not demand:
            continue
        if rules.strict and s <= rules.group_size:
            groups = range(len(free_groups))
        else:
            groups = [None]
        slot_vars = []
        for g in groups:
            free = sum(free_groups) if g is None else free_groups[g]
            # Only cards a victim holds whole become whole free cards; a released share does not.
            gain = [
                (lit, sum(1 for sh in a.shares if sh.milli == whole_card and (g is None or sh.card // size == g)))
                for a, lit in released
            ]
            gain = [(lit, c) for lit, c in gain if c]
            top = (free + sum(c for _, c in gain)) // s
            slots = model.new_int_var(0, top, f"s{i}_{s}_{g}")
            model.add(s * slots <= free + _sum(gain))
            slot_vars.append(slots)
        model.add(_sum(demand) <= sum(slot_vars))


def _sum(terms) -> cp_model.LinearExprT:
    if not terms:
        return 0
    return cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms])


def _apply(
    state: pools.State, gang: workload.Gang, evictions: list[plan.Eviction], counts: list[dict[int, int]], status: str
) -> Outcome | None:
    """Carry out the evictions and place the gang on the chosen nodes; undo all if it fails."""
    ledger = state.ledger
    undo: list[ledger_.Allocation] = []
    for eviction in evictions:
        for pod in eviction.pods:
            if pod in ledger:
                undo.append(state.release(pod))
    done: list[ledger_.Allocation] = []
    entries = [
        (gang.pod(pod_set, index), i)
        for pod_set, per_node in zip(gang.pod_sets, counts, strict=True)
        for index, i in enumerate(i for i, n in sorted(per_node.items()) for _ in range(n))
    ]
    for pod, i in sorted(entries, key=lambda e: -e[0].milli):
        cards = fit.choose(ledger, i, pod, gang.cards)
        if cards is None:
            state.undo(done)
            for a in undo:
                state.allocate(a)
            return None
        allocation = scoring.allocation(pod, scoring.Placement(i, cards, 0))
        state.allocate(allocation)
        done.append(allocation)
    return Outcome(tuple(evictions), tuple(done), status)
