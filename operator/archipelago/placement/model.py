"""The CP-SAT pass: choose which gangs run and in which pools, in aggregate.

Decision variables (``../shared/notes/cpsat-gang-model.md``):

* ``y[i, r, b]``: pods of pod set ``r`` of item ``i`` placed in pool ``b`` (integer). An item
  is one gang, or a class of identical single-pod gangs merged into one count.
* ``a[i]``: gang ``i`` admitted. Pod-set counts lie between its lower bound and its count
  when admitted, and sum to at least ``min_member``.
* ``z[i, d]``: the one domain a ``required`` gang lives in; ``u[i, d]``: the domains a
  ``preferred`` gang touches, whose count beyond one is penalised.
* ``broken[b]``: whole servers of pool ``b`` that smaller pods must start.

Capacity per pool: for every slot size ``s``, slots used by pods of ``s`` cards or more stay
within the pool's free ``s``-slots (exact for power-of-two pods, see ``fit.slots``), and cpu,
memory and milli-cards stay within the pool's free totals. A gang that requires one node or
one link group enters as a single pod of all its cards.

An admitted gang is worth its cards times its priority tier's weight, or the weight alone
under ``plan.Queueing.MOST_GANGS`` (``objective.units``).

With ``plan.Queueing.BEST_EFFORT_FIFO`` queue order stands within a priority: a gang the
greedy hint admits stays admitted unless a gang of higher priority waits in the hint (``kept``).
Otherwise admitted cards alone would let a later gang of the same priority displace an earlier
one for having more cards; the solver may still add gangs, move them, and drop lower-priority
ones for a higher-priority gang the greedy placer could not fit. Keeping is a penalty above
anything the waiting gangs could add, not a hard constraint: the aggregate model cannot always
express the hint (a whole-node gang counts all its pods, optional ones included).

The model never sees single nodes; ``decode`` turns the counts into cards, best fit
decreasing inside each pool, and any gang that does not decode is left out. The caller keeps
whichever of this and the greedy plan scores better, so the solver never returns worse than
its hint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

from ortools.sat.python import cp_model

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.placement import greedy, objective, plan, pools

_INT64_SAFE = 2**60


@dataclasses.dataclass
class _Part:
    """One pod set of an item as the model sees it."""

    pod: workload.PodRequest
    count: int
    lower: int
    pools: list[int]


@dataclasses.dataclass
class _Item:
    gangs: list[workload.Gang]
    parts: list[_Part]
    merged: bool
    whole_node: bool
    depth: int | None
    required: bool
    weight: int

    @property
    def gang(self) -> workload.Gang:
        return self.gangs[0]


@dataclasses.dataclass
class Solution:
    """Pods per (gang, pod set, pool) the solver chose, and how the solve went."""

    counts: dict[str, list[dict[int, int]]]
    status: str
    objective: int
    variables: int
    build_seconds: float
    solve_seconds: float


def items(state: pools.State, gangs: Sequence[workload.Gang], weights: Mapping[int, int]) -> list[_Item]:
    """The model's decision units, in queue order; identical single-pod gangs are merged."""
    topo = state.ledger.cluster.topology
    out: list[_Item] = []
    classes: dict[tuple, _Item] = {}
    for gang in gangs:
        request = gang.topology
        whole_node = bool(request and request.one_node)
        if gang.size == 1 and not whole_node:
            pod = gang.pods()[0]
            key = (pod.fit_key, gang.priority)
            item = classes.get(key)
            if item is not None:
                item.gangs.append(gang)
                item.parts[0].count += 1
                continue
        if whole_node:
            pod = _as_one_pod(gang)
            parts = [_Part(pod, 1, 1, state.eligible(pod, gang.cards))]
            for s in gang.pod_sets:
                allowed = set(state.eligible(s.request, gang.cards))
                parts[0].pools = [k for k in parts[0].pools if k in allowed]
        else:
            parts = [
                _Part(s.request, s.count, lower, state.eligible(s.request, gang.cards))
                for s, lower in zip(gang.pod_sets, gang.lower_bounds(), strict=True)
            ]
        depth = None
        required = bool(request and request.required and not whole_node and request.level in topo.levels)
        if required:
            for part in parts:
                part.pools = [k for k in part.pools if not state.pools[k].private]
            depth = topo.depth(request.level)  # type: ignore[union-attr]
        elif gang.size > 1 and not whole_node:
            depth = objective.preferred_depth(topo, gang)
        item = _Item(
            [gang], parts, gang.size == 1 and not whole_node, whole_node, depth, required, weights[gang.priority]
        )
        out.append(item)
        if item.merged:
            classes[(parts[0].pod.fit_key, gang.priority)] = item
    return out


def _as_one_pod(gang: workload.Gang) -> workload.PodRequest:
    """A gang that must share one node, as one pod of all its cards, cpu and memory."""
    pods = gang.pods()
    cards = sum(p.cards for p in pods)
    first = pods[0]
    return dataclasses.replace(
        first,
        name=gang.name,
        cpu_milli=sum(p.cpu_milli for p in pods),
        memory_mib=sum(p.memory_mib for p in pods),
        cards=cards,
        milli_per_card=1000 if cards else 0,
        device_memory_mib=max(p.device_memory_mib for p in pods) if cards else 0,
    )


def solve(
    state: pools.State,
    units: Sequence[_Item],
    hint: Mapping[str, Sequence[ledger_.Allocation]],
    config: plan.Config,
    seconds: float,
) -> Solution:
    """Build and solve the model within ``seconds`` of wall time, hinted with the greedy plan."""
    started = time.perf_counter()
    model = cp_model.CpModel()
    sizes = state.sizes
    per_pool: dict[int, list[tuple[_Part, cp_model.IntVar]]] = {}
    y: list[list[dict[int, cp_model.IntVar]]] = []
    value_terms: list[tuple[cp_model.LinearExprT, int, int]] = []  # (expression, coefficient, its bound)
    extra_terms: list[cp_model.LinearExprT] = []
    hinted = _hint_counts(state, units, hint)
    # Dropping a kept gang costs more than every waiting gang is worth.
    keep = kept(units, hint) if config.queueing is plan.Queueing.BEST_EFFORT_FIFO else set()
    waiting = (
        item.weight * objective.units(g, config.queueing) for item in units for g in item.gangs if g.name not in hint
    )
    cards_count = objective.by_cards(config.queueing)
    keep_penalty = 1 + sum(waiting) if keep else 0
    for n, item in enumerate(units):
        gang_vars: list[dict[int, cp_model.IntVar]] = []
        admitted = None if item.merged else model.new_bool_var(f"a{n}")
        for r, part in enumerate(item.parts):
            cards = max(1, part.pod.cards) if part.pod.cards else 0
            vs = {b: model.new_int_var(0, part.count, f"y{n}_{r}_{b}") for b in part.pools}
            gang_vars.append(vs)
            for b, v in vs.items():
                per_pool.setdefault(b, []).append((part, v))
                model.add_hint(v, hinted[n][r].get(b, 0))
            total = sum(vs.values())
            if item.merged:
                model.add(total <= part.count)
                hinted_count = sum(hinted[n][r].values())
                if hinted_count and item.gang.name in keep:
                    short = model.new_int_var(0, hinted_count, f"short{n}")
                    model.add(short >= hinted_count - total)
                    model.add_hint(short, 0)
                    value_terms.append((short, -keep_penalty, hinted_count))
                value_terms.append((total, item.weight * (max(1, cards) if cards_count else 1), part.count))
            else:
                model.add(total >= part.lower * admitted)
                model.add(total <= part.count * admitted)
                if cards and cards_count:
                    value_terms.append((total, item.weight * cards, part.count))
        if admitted is not None:
            placed_hint = int(any(hinted[n][r] for r in range(len(item.parts))))
            model.add_hint(admitted, placed_hint)
            if item.gang.name in keep:
                value_terms.append((admitted, keep_penalty, 1))
            if not item.whole_node:
                model.add(sum(v for vs in gang_vars for v in vs.values()) >= item.gang.min_member * admitted)
            if item.gang.cards == 0 or not cards_count:
                value_terms.append((admitted, item.weight, 1))
            if item.depth is not None:
                domains: dict[topology.DomainId, cp_model.IntVar] = {}
                used = {state.pools[k].domain(item.depth) for rr in hinted[n] for k in rr if rr[k]}
                for r, vs in enumerate(gang_vars):
                    for b, v in vs.items():
                        d = state.pools[b].domain(item.depth)
                        if d not in domains:
                            domains[d] = model.new_bool_var(f"d{n}_{len(domains)}")
                            model.add_hint(domains[d], int(d in used))
                        model.add(v <= item.parts[r].count * domains[d])
                if item.required:
                    model.add(sum(domains.values()) == admitted)
                elif domains:
                    model.add(sum(domains.values()) >= admitted)
                    extra_terms.append(sum(domains.values()) - admitted)
        y.append(gang_vars)
    broken_terms = _add_capacity(model, state, sizes, per_pool, units, hinted)
    # Lexicographic weights: value first, then islands spanned, then servers broken.
    max_broken = sum(len(p.nodes) for p in state.pools)
    max_extra = sum(len(item.parts[0].pools) for item in units if item.depth is not None and not item.required)
    k_extra = max_broken + 1
    k_value = config.island_penalty * max_extra * k_extra + max_broken + 1
    max_value = sum(abs(coef) * bound for _, coef, bound in value_terms)
    value = sum(coef * expr for expr, coef, _ in value_terms)
    if max_value * k_value > _INT64_SAFE:
        k_extra, k_value, broken_terms = 1, config.island_penalty * max_extra + 1, []
    model.maximize(k_value * value - config.island_penalty * k_extra * sum(extra_terms) - sum(broken_terms))
    if model.validate():
        # CP-SAT bounds the objective's sum of |coefficient| x |bound| well below int64: then
        # only admission counts here, and the decoded plans still compare on all three terms.
        model.maximize(value)
    built = time.perf_counter()
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, seconds - (built - started))
    solver.parameters.num_workers = config.workers
    solver.parameters.random_seed = config.seed
    solver.parameters.cp_model_presolve = False
    status = solver.solve(model)
    done = time.perf_counter()
    counts: dict[str, list[dict[int, int]]] = {}
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        for item, gang_vars in zip(units, y, strict=True):
            chosen = [{b: int(solver.value(v)) for b, v in vs.items() if solver.value(v)} for vs in gang_vars]
            counts[item.gang.name] = chosen
    return Solution(
        counts,
        solver.status_name(status),
        int(solver.objective_value) if counts else 0,
        len(model.proto.variables),
        built - started,
        done - built,
    )


def kept(units: Sequence[_Item], hint: Mapping[str, object]) -> set[str]:
    """The gangs of ``hint`` the solver's plan must keep admitted: those of a priority no
    lower than any gang the hint leaves waiting (all of them when none waits)."""
    waiting = [g.priority for item in units for g in item.gangs if g.name not in hint]
    floor = max(waiting, default=None)
    return {g.name for item in units for g in item.gangs if g.name in hint and (floor is None or g.priority >= floor)}


def _add_capacity(model, state, sizes, per_pool, units, hinted) -> list:
    """Slot, cpu, memory and milli capacity per pool; returns the broken-server terms."""
    hint_per_pool: dict[int, list[tuple[_Part, int]]] = {}
    for n, item in enumerate(units):
        for r, part in enumerate(item.parts):
            for b, count in hinted[n][r].items():
                hint_per_pool.setdefault(b, []).append((part, count))
    broken_terms = []
    for b, entries in per_pool.items():
        pool = state.pools[b]
        for k, s in enumerate(sizes):
            terms = [(v, pools.slot_demand(p.pod.cards, s)) for p, v in entries if p.pod.cards and not p.pod.sharing]
            terms = [(v, c) for v, c in terms if c]
            if terms:
                model.add(
                    cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms]) <= pool.slots[k]
                )
        for attr, total in (("cpu_milli", pool.cpu), ("memory_mib", pool.memory), ("milli", pool.milli)):
            terms = [(v, getattr(p.pod, attr)) for p, v in entries if getattr(p.pod, attr)]
            if terms:
                model.add(cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms]) <= total)
        server = pool.node.card_count
        if server and server in sizes:
            whole = pool.slots[sizes.index(server)]
            partial = pool.slots[0] - server * whole
            small = [(v, p.pod.cards) for p, v in entries if 0 < p.pod.cards < server]
            if small:
                most = max(0, whole)
                broken = model.new_int_var(0, most, f"broken{b}")
                model.add(
                    server * broken
                    >= cp_model.LinearExpr.weighted_sum([v for v, _ in small], [c for _, c in small]) - partial
                )
                hinted_small = sum(p.pod.cards * c for p, c in hint_per_pool.get(b, []) if 0 < p.pod.cards < server)
                model.add_hint(broken, min(most, max(0, -(-(hinted_small - partial) // server))))
                broken_terms.append(broken)
    return broken_terms


def _hint_counts(
    state: pools.State, units: Sequence[_Item], hint: Mapping[str, Sequence[ledger_.Allocation]]
) -> list[list[dict[int, int]]]:
    """The greedy plan as counts per (item, pod set, pool)."""
    out: list[list[dict[int, int]]] = []
    for item in units:
        per_part: list[dict[int, int]] = [{} for _ in item.parts]
        for gang in item.gangs:
            allocations = hint.get(gang.name, ())
            if not allocations:
                continue
            if item.whole_node:
                b = state.pool_of[allocations[0].node]
                per_part[0][b] = 1
                continue
            part_of = {gang.pod(s, i).name: r for r, s in enumerate(gang.pod_sets) for i in range(s.count)}
            for a in allocations:
                r = 0 if item.merged else part_of[a.pod]
                b = state.pool_of[a.node]
                per_part[r][b] = per_part[r].get(b, 0) + 1
        out.append(per_part)
    return out


def decode(
    state: pools.State,
    units: Sequence[_Item],
    solution: Solution,
    queueing: plan.Queueing = plan.Queueing.MOST_CARDS,
) -> dict[str, tuple[ledger_.Allocation, ...]]:
    """Turn counts into allocations on ``state``: per pool, largest pods first, tightest node.

    Gangs that do not decode whole are rolled back. Then every gang still out, in the queue
    order of ``queueing``, is offered what is left by the greedy placer: those rolled back, and
    those the aggregate model left out though they fit (it counts pools, not cards), so no
    fitting gang idles.
    """
    work: dict[int, list[tuple[int, workload.Gang, workload.PodRequest]]] = {}
    whole_node: list[tuple[workload.Gang, int]] = []
    for item in units:
        chosen = solution.counts.get(item.gang.name)
        if not chosen or not any(chosen):
            continue
        if item.merged:
            pending = iter(item.gangs)
            for b, count in sorted(chosen[0].items()):
                for _ in range(count):
                    gang = next(pending)
                    work.setdefault(b, []).append((gang.cards, gang, gang.pods()[0]))
            continue
        gang = item.gang
        if item.whole_node:
            whole_node.append((gang, next(iter(chosen[0]))))
            continue
        for pod_set, per_pool in zip(gang.pod_sets, chosen, strict=True):
            index = 0
            for b, count in sorted(per_pool.items()):
                for _ in range(count):
                    pod = gang.pod(pod_set, index)
                    index += 1
                    work.setdefault(b, []).append((pod.cards, gang, pod))
    placed: dict[str, list[ledger_.Allocation]] = {}
    failed: set[str] = set()
    for gang, b in whole_node:
        allocations = greedy.place_on_pools(state, gang, (b,), keep=True)
        if allocations is None:
            failed.add(gang.name)
        else:
            placed[gang.name] = list(allocations)
    for b, entries in work.items():
        queue = sorted((0, int(state.ledger.free_milli[i]), i) for i in state.pools[b].nodes)
        for _, gang, pod in sorted(entries, key=lambda e: (-e[2].milli, e[2].name)):
            if gang.name in failed:
                continue
            allocation = greedy.place_pod(state, pod, gang.cards, queue)
            if allocation is None:
                failed.add(gang.name)
            else:
                placed.setdefault(gang.name, []).append(allocation)
    for name in failed:
        state.undo(placed.pop(name, ()))
    out = {name: tuple(allocations) for name, allocations in placed.items()}
    left = (g for item in units for g in item.gangs if g.name not in out)
    out.update(greedy.run(state, greedy.order(left, queueing)))
    return out
