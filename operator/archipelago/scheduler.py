"""The scheduling loop: one cycle at a time, from the operator's caches to API writes.

Each cycle reads the caches (nodes, pools, pods, workloads, PriorityClasses), rebuilds the
ledger from pod annotations, settles each workload's lifecycle, runs the pure scheduling
cycle (``archipelago.cycle.run``, the simulator's code) in a worker thread, checks the plan
with the solver-independent validator and only then applies it through ``actuation``.
Nothing is kept between cycles except the preemptions in flight: the cluster is the state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from archipelago import config, cycle, inventory, lifecycle, manifests, metrics, queueing, workload
from archipelago import status as status_
from archipelago.actuation import Actuator, Created
from archipelago.api import common, labels, resources
from archipelago.api import reasons as reasons_
from archipelago.cluster import ledger as ledger_
from archipelago.placement import plan as plan_
from archipelago.placement import validate
from archipelago.policies import fgd

logger = logging.getLogger(__name__)
Reason = reasons_.Reason
SCHEDULED = reasons_.ConditionType.SCHEDULED

ASSUMED_FOR_S = 120.0
"""How long a pod this operator created counts, as created, before the pods watch shows it
(seconds). kube-scheduler's assume cache (pkg/scheduler/backend/cache) does the same for the
binding it just made: a watch that lags behind the operator's own writes must neither hand the
pod's cards to another gang nor make its gang look as though it lost the pod. Past this, a pod
never seen (deleted before the watch showed it) frees its cards again."""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What one cycle reads: plain object dicts from the operator's indexes."""

    nodes: Sequence[Mapping[str, Any]] = ()
    pools: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    jobs: Sequence[Mapping[str, Any]] = ()
    services: Sequence[Mapping[str, Any]] = ()
    priority_classes: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass
class _Round:
    """One cycle's context while workloads are settled, and what settling collects."""

    now: float
    stamp: str
    lost: set[str]
    catalogue: queueing.Catalogue
    ledger: ledger_.Ledger
    existing: set[str]
    """Pod keys that exist (any phase)."""
    running: dict[str, plan_.Running] = dataclasses.field(default_factory=dict)
    pending: list[workload.Gang] = dataclasses.field(default_factory=list)
    owners: dict[str, tuple[status_.Draft, workload.Gang]] = dataclasses.field(default_factory=dict)
    bodies: Mapping[tuple[str, str], Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Each pod (watched or assumed) by namespace and name."""
    deletions: list[tuple[str, tuple[str, ...], int | None]] = dataclasses.field(default_factory=list)
    """Pods to delete (finished, suspended, lost): namespace, names, grace."""
    restarts: list[tuple[status_.Draft, tuple[str, ...]]] = dataclasses.field(default_factory=list)
    """Gangs that restart whole, and their pods to remove first (through disruption budgets)."""


class Scheduler:
    """Runs cycles on events and on a resync period, until cancelled. One instance per operator."""

    def __init__(
        self,
        read: Callable[[], Inputs],
        actuator: Actuator,
        settings: config.Operator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read = read
        self.actuator = actuator
        self.settings = settings or config.Operator()
        self.clock = clock
        self.last_plan: plan_.Plan | None = None
        self._wake = asyncio.Event()
        self._inventory_key: tuple | None = None
        self._inventory_cache: inventory.Inventory | None = None
        self._reported: set[str] = set()
        self._preempting: dict[str, set[str]] = {}
        """Preemptor gang to the victim pod keys still terminating."""
        self._assumed: dict[tuple[str, str], tuple[Mapping[str, Any], float]] = {}
        """(namespace, name) of each pod created but not yet seen, to its body and when it is forgotten."""
        self._observed: dict[str, float] = {}
        """Uid of each pod the watch delivered an event of in the last ASSUMED_FOR_S, to when."""

    def _with_assumed(self, pods: Sequence[Mapping[str, Any]], now: float) -> list[Mapping[str, Any]]:
        """The watched pods, and each pod created since that the watch has not shown yet."""
        seen = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]) for p in pods}
        self._assumed = {k: v for k, v in self._assumed.items() if k not in seen and v[1] > now}
        self._observed = {uid: at for uid, at in self._observed.items() if at > now - ASSUMED_FOR_S}
        return [*pods, *(body for body, _ in self._assumed.values())]

    def observed(self, namespace: str, name: str, uid: str) -> None:
        """The pods watch delivered an event (added, changed or deleted) of this pod: it is no longer
        assumed. A pod made and removed between two cycles never shows in the index, only here;
        and its events may come before the cycle that made it records it (see ``_assume``)."""
        self._observed[uid] = self.clock()
        key = (namespace, name)
        assumed = self._assumed.get(key)
        if assumed is not None and assumed[0]["metadata"].get("uid") in ("", uid):
            del self._assumed[key]
        self.wake()

    def _inventory(self, nodes, pool_bodies, pools, now: float) -> inventory.Inventory:
        """The cluster read from the nodes, reused while no Node or AcceleratorPool changed and no
        not-Ready node's grace ran out.

        Objects from the API carry a ``resourceVersion`` that changes with every write; without
        one (hand-built inputs) the cluster is read afresh.
        """
        versions = [(b["metadata"].get("name"), b["metadata"].get("resourceVersion")) for b in (*nodes, *pool_bodies)]
        key = tuple(versions) if all(v for _, v in versions) else None
        cached = self._inventory_cache
        expired = cached is not None and cached.not_ready_until is not None and now >= cached.not_ready_until
        if key is None or key != self._inventory_key or expired:
            self._inventory_cache = inventory.cluster(
                nodes, pools, now=now, lost_after_s=self.settings.node_lost_after_s
            )
            self._inventory_key = key
        return self._inventory_cache

    def wake(self) -> None:
        """Ask for a cycle soon (called by the watch handlers)."""
        self._wake.set()

    async def run(self, ready: asyncio.Event) -> None:
        """Cycle forever once ``ready`` (the caches are complete); a failing cycle is logged, never fatal."""
        await ready.wait()
        while True:
            self._wake.clear()
            pause = self.settings.resync_s
            try:
                applied = await self.cycle()
                if applied is not None and applied.retry_at is not None:  # a gang may preempt then
                    pause = min(pause, max(0.0, applied.retry_at - self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduling cycle failed; retrying on the next event")
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the wake-up does (cpython gh-86296), and the daemon would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            await asyncio.sleep(self.settings.settle_s)

    async def cycle(self) -> plan_.Plan | None:
        """One cycle. Returns the plan applied, or None when the validator rejected it."""
        started = time.perf_counter()
        now = self.clock()
        stamp = status_.rfc3339(now)
        inputs = self.read()
        inputs = dataclasses.replace(inputs, pods=self._with_assumed(inputs.pods, now))

        # 1. The cluster and the ledger, rebuilt from nodes, pools and pod annotations, in a worker
        # thread: the index values are our own copies, which kopf replaces and never mutates.
        pools = _pools(inputs.pools)
        inv = await asyncio.to_thread(self._inventory, inputs.nodes, inputs.pools, pools, now)
        rebuilt = await asyncio.to_thread(inventory.ledger, inv.cluster, inputs.pods)
        problems = {str(p) for p in (*inv.problems, *rebuilt.problems, *rebuilt.conflicts)}
        for problem in sorted(problems - self._reported):  # each once, not every cycle
            logger.warning("%s", problem)
        self._reported = problems
        catalogue = queueing.Catalogue(
            priorities={p["metadata"]["name"]: int(p.get("value", 0)) for p in inputs.priority_classes},
            default_priority=next(
                (int(p.get("value", 0)) for p in inputs.priority_classes if p.get("globalDefault")), 0
            ),
            pools=pools,
            models={name: frozenset(facts.models) for name, facts in inv.pools.items()},
            levels=inv.cluster.topology.levels,
        )
        owned: dict[tuple[str, str, str], list[lifecycle.PodView]] = collections.defaultdict(list)
        for pod in inputs.pods:
            v = lifecycle.view(pod)
            pod_labels = pod["metadata"].get("labels") or {}
            owned[(pod_labels.get(labels.JOB_KIND, ""), v.namespace, pod_labels.get(labels.JOB_NAME, ""))].append(v)
        existing = {v.key for views in owned.values() for v in views}
        # A node that is NotReady, or gone altogether, has lost its pods.
        known = {n.name for n in inv.cluster.nodes}
        lost = set(inv.lost) | {v.node for views in owned.values() for v in views if v.node and v.node not in known}

        # 2. Each workload's lifecycle: what runs, what queues, what goes.
        drafts: dict[str, status_.Draft] = {}
        bodies = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]): p for p in inputs.pods}
        round_ = _Round(now, stamp, lost, catalogue, rebuilt.ledger, existing, bodies=bodies)
        for kind, bodies in ((resources.TRAINING_JOB, inputs.jobs), (resources.INFERENCE_SERVICE, inputs.services)):
            for body in bodies:
                meta = body.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    continue
                try:
                    w = queueing.read(kind, body)
                except queueing.SpecError as e:  # a spec that does not parse: Failed, the field named
                    await self.hold(kind, body, common.Phase.FAILED, e.reason, str(e))
                    continue
                draft = drafts[w.key] = status_.Draft.of(w)
                views = owned.get((kind.kind, w.namespace, w.name), [])
                try:
                    self._settle(draft, views, round_)
                except Exception:  # a bug on one workload must not stop the others
                    logger.exception("%s %s skipped this cycle", kind.kind, w.key)
                    drafts.pop(w.key)

        # 3. The cycle, off the event loop, and the validator.
        running, pending, owners = round_.running, round_.pending, round_.owners
        snapshot = plan_.Snapshot(rebuilt.ledger, running, now)
        # The solver gets what the translation above left of the budget, so a cycle stays near it.
        left = max(0.1, self.settings.cycle.budget_s - (time.perf_counter() - started))
        budget = dataclasses.replace(self.settings.cycle, budget_s=left)
        plan = await asyncio.to_thread(cycle.run, snapshot, pending, budget)
        try:
            validate.check(snapshot, pending, plan)
        except validate.InvalidPlan as e:
            metrics.INVALID_PLANS.inc()
            logger.error("the plan was not applied: %s", e)
            return None
        self.last_plan = plan

        # 4. Apply: lifecycle deletions, evictions, placements, waits, statuses.
        for namespace, names, grace in round_.deletions:
            await self.actuator.delete_pods(namespace, names, grace)
        for draft, names in round_.restarts:
            await self._restart(draft, names, round_)
        await self._evict(plan, owners, round_)
        await self._place(plan, owners, inv.cluster, stamp)
        for gang, wait in plan.waiting.items():
            draft, _ = owners[gang]
            draft.condition(SCHEDULED, "False", wait.code, wait.message, stamp, event="Warning")
        used = status_.usage(rebuilt.ledger)
        pool_writes = []
        for body in inputs.pools:
            name = body["metadata"]["name"]
            new = status_.pool(body, inv.pools.get(name), used, stamp)
            if new != (body.get("status") or {}):
                pool_writes.append(self.actuator.patch_status(resources.ACCELERATOR_POOL, "", name, new))
        # Status and Event writes at once, bounded by the actuator's requests in flight.
        await asyncio.gather(*(self._write(draft) for draft in drafts.values()), *pool_writes)
        metrics.observe(
            time.perf_counter() - started,
            [w.code for w in plan.waiting.values()],
            used,
            _fragmented(rebuilt.ledger, [*pending, *(r.gang for r in running.values())]),
        )
        return plan

    def _settle(self, draft: status_.Draft, views: list[lifecycle.PodView], r: _Round) -> None:
        """Apply the lifecycle verdict of one workload and sort its gangs into running and pending."""
        now, stamp, lost, catalogue, ledger = r.now, r.stamp, r.lost, r.catalogue, r.ledger
        running, pending, owners, deletions, existing = r.running, r.pending, r.owners, r.deletions, r.existing
        w = draft.workload
        queued_at = queueing.timestamp(w.status.queued_time) or w.created
        try:
            if w.training:
                gangs = [queueing.training_gang(w, catalogue, queued_at=queued_at)]
                verdict = lifecycle.training(w.spec, w.status, views, lost, gangs[0].min_member)
            else:
                verdict = lifecycle.inference(w.spec, views, lost)
                gangs = queueing.inference_gangs(w, catalogue, range(w.spec.replicas), queued_at=queued_at)
        except queueing.SpecError as e:
            phase = common.Phase.FAILED if e.permanent else common.Phase.PENDING
            draft.status["phase"] = phase.value if not views else draft.status.get("phase", common.Phase.PENDING.value)
            draft.condition(SCHEDULED, "False", e.reason, str(e), stamp, event="Warning")
            return
        draft.status["phase"] = verdict.phase.value
        draft.status["observedGeneration"] = w.generation
        if verdict.restart:
            draft.status["restarts"] = w.status.restarts + 1
            draft.status["avoidNodes"] = list(verdict.avoid[: common.AVOID_NODES_MAX])
            metrics.GANG_RESTARTS.inc()
        if verdict.condition:
            type_, status, reason, message = verdict.condition
            draft.condition(type_, status, reason, message, stamp, event="Warning" if status == "False" else "Normal")
        if verdict.state is lifecycle.State.DONE and verdict.phase in (common.Phase.SUCCEEDED, common.Phase.FAILED):
            draft.status.setdefault("completionTime", stamp)
        if verdict.restart:
            r.restarts.append((draft, verdict.delete))
        elif verdict.delete:
            grace = w.spec.checkpoint.grace_period_seconds if w.training and w.spec.suspend else None
            deletions.append((w.namespace, verdict.delete, grace))
        if verdict.state in (lifecycle.State.DONE, lifecycle.State.DRAINING):
            draft.status.pop("placement", None)
            return
        live = {v.key for v in views if v.live and v.name not in verdict.delete}
        for gang in gangs:
            owners[gang.name] = (draft, gang)
            mine = tuple(p.name for p in gang.pods() if p.name in live)
            if mine:
                started = queueing.timestamp(w.status.start_time) or now
                checkpointed = queueing.timestamp(w.annotations.get(labels.CHECKPOINTED_AT))
                running[gang.name] = plan_.Running(gang, mine, started, checkpointed)
            elif w.training or int(gang.name.rsplit("/", 1)[1]) in verdict.missing:
                victims = self._preempting.get(gang.name, set()) & existing
                if victims:
                    draft.condition(
                        SCHEDULED,
                        "False",
                        Reason.PREEMPTING,
                        f"waiting for {len(victims)} preempted pods to finish their grace period",
                        stamp,
                    )
                    continue
                self._preempting.pop(gang.name, None)
                pending.append(gang)
        held = [ledger.get(p) for g in gangs if g.name in running for p in running[g.name].pods]
        if held:
            draft.status["placement"] = status_.placement([a for a in held if a], ledger.cluster)
        else:
            draft.status.pop("placement", None)
        draft.status.setdefault("queuedTime", status_.rfc3339(queued_at))

    async def _restart(self, draft: status_.Draft, names: tuple[str, ...], r: _Round) -> None:
        """Remove a restarting gang's pods; while a disruption budget forbids it, the restart waits
        (not counted toward backoffLimit) and says so."""
        w = draft.workload
        done = await self.actuator.disrupt(w.namespace, [r.bodies[(w.namespace, n)] for n in names])
        if done.blocked:
            for key in ("restarts", "avoidNodes"):
                draft.status.pop(key, None)
                if key in draft.original:
                    draft.status[key] = draft.original[key]
            message = f"the gang cannot restart: {done.blocked}"
            draft.condition(SCHEDULED, "False", Reason.DISRUPTION_BUDGET, message, r.stamp, event="Warning")

    async def _evict(self, plan: plan_.Plan, owners, r: _Round) -> None:
        """Remove the victims' pods with their checkpoint grace, through their disruption budgets;
        hold the preemptor until they are gone, or tell it which budget forbids the preemption."""
        stamp = r.stamp
        blocked: dict[str, str] = {}  # preemptor to why a budget forbids one of its evictions
        for eviction in plan.evictions:
            namespace = owners[eviction.gang][0].workload.namespace
            if eviction.for_gang not in blocked and (
                why := await self.actuator.blocking(namespace, _pods(eviction, r))
            ):
                blocked[eviction.for_gang] = f"cannot preempt {eviction.gang}: {why}"
        for eviction in plan.evictions:
            draft, _ = owners[eviction.gang]
            w = draft.workload
            grace = w.spec.checkpoint.grace_period_seconds if w.training else None
            names = tuple(p.split("/", 1)[1] for p in eviction.pods)
            preemptor, gang = owners[eviction.for_gang]
            if eviction.for_gang not in blocked:
                done = await self.actuator.disrupt(w.namespace, _pods(eviction, r), grace)
                if done.blocked:  # a budget changed since the look: what went is gone, the rest waits
                    blocked[eviction.for_gang] = f"cannot preempt {eviction.gang}: {done.blocked}"
            if eviction.for_gang in blocked:
                message = blocked[eviction.for_gang]
                preemptor.condition(SCHEDULED, "False", Reason.DISRUPTION_BUDGET, message, stamp, event="Warning")
                continue
            self._preempting.setdefault(eviction.for_gang, set()).update(eviction.pods)
            what = "preempted" if eviction.whole else f"shrunk by {len(names)} pods"
            message = (
                f"{what} for {eviction.for_gang} (priority {gang.priority}); "
                f"{eviction.lost_card_seconds:.0f} card-seconds since the last checkpoint are lost"
            )
            draft.condition(reasons_.ConditionType.PREEMPTED, "True", Reason.PREEMPTED, message, stamp, event="Warning")
            if eviction.whole:
                draft.status["preemptions"] = w.status.preemptions + 1
                draft.status["phase"] = common.Phase.PENDING.value
                # In the same write as Pending: no longer scheduled, until a cycle says why it waits.
                draft.condition(SCHEDULED, "False", Reason.PREEMPTED, message, stamp)
            preemptor.condition(
                SCHEDULED,
                "False",
                Reason.PREEMPTING,
                f"preempting {eviction.gang} ({len(names)} pods, grace {grace or 'default'} s)",
                stamp,
                event="Normal",
            )
            metrics.PREEMPTIONS.inc()
        for eviction in plan.evictions:
            plan.placed.pop(eviction.for_gang, None)

    async def _place(self, plan: plan_.Plan, owners, cluster, stamp: str) -> None:
        """Create each placed gang's pods, all or none."""
        for gang_name, allocations in plan.placed.items():
            draft, gang = owners[gang_name]
            w = draft.workload
            templates = _templates(w)
            by_pod = {
                p.name: (s.role, s.first_index + i)
                for s in gang.pod_sets
                for i, p in enumerate(gang.pod(s, j) for j in range(s.count))
            }
            pods = [
                manifests.pod(
                    w,
                    by_pod[a.pod][0],
                    by_pod[a.pod][1],
                    templates[by_pod[a.pod][0]],
                    a,
                    cluster,
                    gang=gang_name,
                    gang_pods=len(allocations),
                    started_at=stamp,
                )
                for a in allocations
            ]
            headless = manifests.service(w) if w.training else None
            if headless is not None:
                await self.actuator.ensure_service(headless)
            created = await self.actuator.create_gang(pods)
            self._assume(w.namespace, pods, created, stamp)
            if not created.ok:
                phase = common.Phase.FAILED if created.permanent and w.training else common.Phase.PENDING
                reason = Reason.RESOURCE_QUOTA_EXCEEDED if created.quota else Reason.POD_CREATION_FAILED
                draft.status["phase"] = phase.value
                draft.condition(SCHEDULED, "False", reason, created.error, stamp, event="Warning")
                continue
            metrics.PLACEMENTS.inc()
            placement = status_.placement(allocations, cluster)
            if w.training or "placement" not in draft.status:
                draft.status["placement"] = placement
            else:
                draft.status["placement"] = status_.merge(draft.status["placement"], placement)
            draft.status["phase"] = common.Phase.RUNNING.value
            draft.status["startTime"] = stamp
            islands = ", ".join(placement["islands"]) or "no island"
            message = (
                f"{len(allocations)} pods on {len(placement['nodes'])} nodes in {islands}, {placement['cards']} cards"
            )
            draft.condition(SCHEDULED, "True", Reason.PLACED, message, stamp, event="Normal")
            if any(c["type"] == reasons_.ConditionType.PREEMPTED for c in draft.status.get("conditions", ())):
                draft.condition(reasons_.ConditionType.PREEMPTED, "False", Reason.PLACED, "running again", stamp)

    def _assume(self, namespace: str, pods: Sequence[dict[str, Any]], created: Created, stamp: str) -> None:
        """Count each pod made as existing until its watch event: kept ones as created, rolled-back
        ones as terminating (they hold their cards until gone). A pod whose event already came,
        while the API calls were awaited, is in the index (or gone) and is not assumed."""
        forget_at = self.clock() + ASSUMED_FOR_S
        for p in pods:
            uid = created.uids.get(p["metadata"]["name"])
            if uid is None or uid in self._observed:
                continue
            meta = {**p["metadata"], "uid": uid}
            if not created.ok:
                meta["deletionTimestamp"] = stamp
            self._assumed[(namespace, meta["name"])] = ({**p, "metadata": meta}, forget_at)

    async def _write(self, draft: status_.Draft) -> None:
        w = draft.workload
        involved = manifests.reference(w.kind.kind, {"namespace": w.namespace, "name": w.name, "uid": w.uid})
        patch = draft.patch()
        await asyncio.gather(
            *(self.actuator.event(involved, type_, reason, message) for type_, reason, message in draft.events),
            *([self.actuator.patch_status(w.kind, w.namespace, w.name, patch)] if patch else []),
        )

    async def hold(
        self, kind: resources.Kind, body: Mapping[str, Any], phase: common.Phase, reason: str, message: str
    ) -> None:
        """Write ``Scheduled=False`` with ``reason`` and ``phase`` on a workload the cycle cannot
        take up, and a Warning Event; nothing when its status already says exactly that."""
        meta = body["metadata"]
        status = dict(body.get("status") or {})
        old = next((c for c in status.get("conditions") or () if c.get("type") == SCHEDULED), None)
        if status.get("phase") == phase and old and (old.get("reason"), old.get("message")) == (reason, message):
            return
        status["phase"] = phase.value
        status["conditions"] = common.with_condition(
            list(status.get("conditions") or []),
            SCHEDULED,
            "False",
            reason,
            message,
            now=status_.rfc3339(self.clock()),
            generation=meta.get("generation"),
        )
        await self.actuator.patch_status(kind, meta.get("namespace", ""), meta["name"], status)
        await self.actuator.event(manifests.reference(kind.kind, meta), "Warning", reason, message)


def _pools(bodies: Sequence[Mapping[str, Any]]) -> dict[str, resources.AcceleratorPoolSpec]:
    pools = {}
    for body in sorted(bodies, key=lambda b: b["metadata"]["name"]):
        try:
            pools[body["metadata"]["name"]] = resources.AcceleratorPoolSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as e:
            logger.warning("AcceleratorPool %s ignored: %s", body["metadata"]["name"], e.errors()[0]["msg"])
    return pools


def _pods(eviction: plan_.Eviction, r: _Round) -> list[Mapping[str, Any]]:
    """The pod objects of an eviction's victims."""
    return [r.bodies[tuple(p.split("/", 1))] for p in eviction.pods]


def _templates(w: queueing.Workload) -> dict[str, Mapping[str, Any]]:
    if w.training:
        return {rs.name: rs.template for rs in w.spec.replica_sets}
    return {queueing.INFERENCE_ROLE: w.spec.template}


def _fragmented(ledger: ledger_.Ledger, gangs: Sequence[workload.Gang]) -> float | None:
    """FGD's fragmentation of the cluster for the typical pods of ``gangs`` (milli-cards), None without pods."""
    profile = workload.typical_tasks(p for g in gangs for p in g.pods())
    return fgd.fragmented_milli(ledger, fgd.Fragmentation(profile)) if profile else None
