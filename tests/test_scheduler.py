"""The scheduling loop without an API server: a recording actuator stands in for the writes."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from archipelago import actuation, config, metrics, scheduler
from archipelago import status as status_
from archipelago.api import labels
from archipelago.cluster import ledger
from archipelago.inventory import pods as inventory_pods
from archipelago.placement import plan
from tests.inventory_builders import make_node_body
from tests.workload_builders import NAMESPACE, make_job, make_priority_class

POOL = {"metadata": {"name": "gpu", "generation": 1}, "spec": {"kind": "GPU", "resourceName": "nvidia.com/gpu"}}


@dataclasses.dataclass
class Recorder:
    created: list[str] = dataclasses.field(default_factory=list)
    deleted: list[tuple[str, int | None]] = dataclasses.field(default_factory=list)
    statuses: dict[str, dict] = dataclasses.field(default_factory=dict)
    bodies: list[dict] = dataclasses.field(default_factory=list)

    async def create_gang(self, pods):
        self.created += [p["metadata"]["name"] for p in pods]
        self.bodies += pods
        return actuation.Created(True, uids={p["metadata"]["name"]: f"uid-{p['metadata']['name']}" for p in pods})

    async def ensure_service(self, service):
        return True

    async def delete_pods(self, namespace, names, grace_s=None):
        self.deleted += [(n, grace_s) for n in names]
        return 0

    async def disrupt(self, namespace, pods, grace_s=None):
        await self.delete_pods(namespace, [p["metadata"]["name"] for p in pods], grace_s)
        return actuation.Disrupted(0)

    async def blocking(self, namespace, pods):
        return ""

    async def patch_status(self, kind, namespace, name, status):
        self.statuses[name] = status
        return True

    async def event(self, involved, type_, reason, message):
        pass


def loop(inputs: list[scheduler.Inputs], recorder: Recorder, clock=time.time) -> scheduler.Scheduler:
    # Preempt at once (the exemption is a policy, tested in tests/test_explain.py): these tests follow the actuation.
    settings = config.Operator(cycle=plan.Config(budget_s=0.5, preemption_exempt_s=0), metrics_port=None)
    return scheduler.Scheduler(lambda: inputs[0], recorder, settings, clock=clock)


def first_placed(clock=time.time) -> tuple[list[scheduler.Inputs], Recorder, scheduler.Scheduler]:
    """One 8-card node; job ``first`` (one 8-card pod) placed by one cycle, its pod not yet watched."""
    state = [
        scheduler.Inputs([make_node_body(name="n1", product="NVIDIA-H800")], [POOL], [], [make_job("first", workers=1)])
    ]
    recorder = Recorder()
    loop_ = loop(state, recorder, clock)
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0"]
    return state, recorder, loop_


def running_pod(job: str, index: int, cards: tuple[int, ...], *, deleting: bool = False) -> dict:
    from archipelago import cluster
    from archipelago.cluster import devices, nodes

    one = cluster.build([nodes.Node("n1", 64_000, 524_288, devices.cards("H800", 8))])
    a = ledger.Allocation(
        f"{NAMESPACE}/{job}-worker-{index}", 0, 4000, 16384, tuple(ledger.CardShare(c, 1000) for c in cards)
    )
    meta = {
        "name": f"{job}-worker-{index}",
        "namespace": NAMESPACE,
        "labels": {
            labels.JOB_KIND: "TrainingJob",
            labels.JOB_NAME: job,
            labels.ROLE: "worker",
            labels.INDEX: str(index),
        },
        "annotations": inventory_pods.annotations(a, one),
        "creationTimestamp": "2026-11-21T09:00:00Z",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-21T10:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}


def test_a_preemptor_waits_until_its_victims_pods_are_gone():
    node = make_node_body(name="n1", product="NVIDIA-H800")
    classes = [make_priority_class("low", 10), make_priority_class("high", 1000)]
    low = make_job("low", workers=1, priority_class="low", preemptible=True, grace=60, status={"phase": "Running"})
    high = make_job("high", workers=1, priority_class="high")
    state = [scheduler.Inputs([node], [POOL], [running_pod("low", 0, tuple(range(8)))], [low, high], (), classes)]
    recorder = Recorder()
    loop_ = loop(state, recorder)

    asyncio.run(loop_.cycle())
    assert recorder.deleted == [("low-worker-0", 60)], "the victim gets its checkpoint grace"
    assert recorder.created == [], "the preemptor waits: the victim still holds its cards"
    assert recorder.statuses["high"]["conditions"][0]["reason"] == "Preempting"

    state[0] = dataclasses.replace(state[0], pods=[running_pod("low", 0, tuple(range(8)), deleting=True)])
    asyncio.run(loop_.cycle())
    assert recorder.created == [] and len(recorder.deleted) == 1, "no second eviction while the first drains"

    state[0] = dataclasses.replace(state[0], pods=[])
    asyncio.run(loop_.cycle())
    assert recorder.created == ["high-worker-0"]


def test_no_card_is_double_booked_while_the_pods_watch_has_not_seen_the_pods_just_created():
    clock = [1000.0]
    state, recorder, loop_ = first_placed(lambda: clock[0])

    # The watch lags: neither the pod nor the status write has come back yet.
    clock[0] += 1
    state[0] = dataclasses.replace(state[0], jobs=[*state[0].jobs, make_job("second", workers=1)])
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0"], "the second gang must not get the first one's 8 cards"
    assert recorder.deleted == [] and recorder.statuses["first"].get("restarts", 0) == 0, "nor look lost"

    # Once the watch shows the pod, it is counted from there (and once only); when it is gone, the cards are free.
    pod = recorder.bodies[0]
    seen = {**pod, "metadata": {**pod["metadata"], "creationTimestamp": "2026-11-21T09:00:00Z"}}
    state[0] = dataclasses.replace(state[0], pods=[{**seen, "status": {"phase": "Running"}}])
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0"]
    state[0] = dataclasses.replace(state[0], pods=[], jobs=[make_job("second", workers=1)])
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0", "second-worker-0"]


def test_a_pod_made_and_removed_between_two_cycles_is_forgotten_on_its_watch_event():
    state, recorder, loop_ = first_placed()
    state[0] = dataclasses.replace(state[0], jobs=[make_job("second", workers=1)])
    loop_.observed(NAMESPACE, "first-worker-0", "uid-of-an-older-pod-of-that-name")
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0"], "an event of another pod of the same name confirms nothing"
    loop_.observed(NAMESPACE, "first-worker-0", "uid-first-worker-0")
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0", "second-worker-0"]


def test_a_pod_created_but_never_seen_is_forgotten_after_the_assume_period():
    clock = [1000.0]
    state, recorder, loop_ = first_placed(lambda: clock[0])
    state[0] = dataclasses.replace(state[0], jobs=[make_job("second", workers=1)])
    clock[0] += scheduler.ASSUMED_FOR_S - 1
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0"]
    clock[0] += 2
    asyncio.run(loop_.cycle())
    assert recorder.created == ["first-worker-0", "second-worker-0"]


def test_a_plan_the_validator_rejects_is_never_applied(monkeypatch):
    node = make_node_body(name="n1", product="NVIDIA-H800")
    state = [scheduler.Inputs([node], [POOL], [], [make_job("llm", workers=1)])]
    recorder = Recorder()
    broken = ledger.Allocation(f"{NAMESPACE}/llm-worker-0", 0, 0, 0, tuple(ledger.CardShare(c, 1000) for c in range(9)))
    monkeypatch.setattr(scheduler.cycle, "run", lambda *_: plan.Plan(placed={f"{NAMESPACE}/llm": (broken,)}))
    rejected = metrics.REGISTRY.get_sample_value("archipelago_invalid_plans_total") or 0

    assert asyncio.run(loop(state, recorder).cycle()) is None
    assert recorder.created == []
    assert metrics.REGISTRY.get_sample_value("archipelago_invalid_plans_total") == rejected + 1


def test_the_inventory_is_reread_only_when_a_node_or_pool_changes():
    def versioned(body, version):
        return {**body, "metadata": {**body["metadata"], "resourceVersion": version}}

    node = versioned(make_node_body(name="n1", product="NVIDIA-H800"), "1")
    state = [scheduler.Inputs([node], [versioned(POOL, "1")])]
    loop_ = loop(state, Recorder())
    asyncio.run(loop_.cycle())
    first = loop_._inventory_cache
    asyncio.run(loop_.cycle())
    assert loop_._inventory_cache is first
    state[0] = dataclasses.replace(
        state[0], nodes=[versioned(make_node_body(name="n1", product="NVIDIA-H800", ready=False), "2")]
    )
    asyncio.run(loop_.cycle())
    assert loop_._inventory_cache is not first and loop_._inventory_cache.lost == ("n1",)


def test_a_spec_that_does_not_parse_fails_naming_the_field_once_while_others_run():
    node = make_node_body(name="n1", product="NVIDIA-H800")
    bad = make_job("bad", workers=1)
    bad["spec"]["replicaSets"][0]["cards"] = {"count": 1, "milli": 1500}
    state = [scheduler.Inputs([node], [POOL], [], [bad, make_job("good", workers=1)])]
    recorder = Recorder()
    loop_ = loop(state, recorder)

    asyncio.run(loop_.cycle())
    status = recorder.statuses["bad"]
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["message"].startswith("spec.replicaSets[0].cards.milli:")
    assert recorder.created == ["good-worker-0"]

    written = recorder.statuses.pop("bad")
    state[0] = dataclasses.replace(state[0], jobs=[{**bad, "status": written}])
    asyncio.run(loop_.cycle())
    assert "bad" not in recorder.statuses, "an unchanged verdict is not written again"


def test_the_loop_stops_when_cancelled_even_as_a_wake_up_arrives(monkeypatch):
    """The operator stops its daemon by cancelling it, often just as a watch event wakes the loop.

    Python 3.11's ``asyncio.wait_for`` returns normally, and loses the cancellation, when its
    awaitable finishes in the same step (cpython gh-86296); the loop then never stopped.
    Every interleaving a few event-loop steps apart is tried.
    """
    settings = config.Operator(resync_s=60.0, settle_s=0.0, metrics_port=None)
    sched = scheduler.Scheduler(lambda: None, Recorder(), settings)
    cycles = 0

    async def cycle():
        nonlocal cycles
        cycles += 1

    monkeypatch.setattr(sched, "cycle", cycle)

    async def trial(steps: int) -> bool:
        ready = asyncio.Event()
        ready.set()
        task = asyncio.create_task(sched.run(ready))
        while cycles == 0:
            await asyncio.sleep(0)
        sched.wake()
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        task.cancel()  # a swallowed cancellation leaves the loop running: end it for the next trial
        return bool(done) and task.cancelled()

    async def trials() -> list[int]:
        nonlocal cycles
        stuck = []
        for steps in range(6):
            cycles = 0
            if not await trial(steps):
                stuck.append(steps)
        return stuck

    assert asyncio.run(trials()) == []


def test_a_plan_asking_for_a_retry_gets_a_cycle_then_not_at_the_resync():
    """A gang held back by the preemption delay may preempt at ``retry_at``: the loop wakes for it."""
    settings = config.Operator(resync_s=60.0, settle_s=0.0, metrics_port=None)
    sched = scheduler.Scheduler(lambda: None, Recorder(), settings)
    times: list[float] = []

    async def cycle():
        times.append(time.monotonic())
        return plan.Plan(retry_at=sched.clock() + 0.1) if len(times) == 1 else plan.Plan()

    sched.cycle = cycle

    async def two_cycles() -> None:
        ready = asyncio.Event()
        ready.set()
        task = asyncio.create_task(sched.run(ready))
        async with asyncio.timeout(5):
            while len(times) < 2:
                await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(two_cycles())
    assert 0.05 < times[1] - times[0] < 5


def test_a_status_write_removes_what_the_cycle_dropped_and_writes_nothing_it_left_alone():
    node = make_node_body(name="n1", product="NVIDIA-H800")
    held = {"cards": 8, "milliCards": 8000, "nodes": ["n1"], "islands": [], "pods": 1}
    done = make_job("done", workers=1, status={"phase": "Running", "placement": held, "restarts": 2})
    finished = running_pod("done", 0, tuple(range(8)))
    finished["status"]["phase"] = "Succeeded"
    recorder = Recorder()
    inputs = [scheduler.Inputs(nodes=[node], pools=[POOL], pods=[finished], jobs=[done])]

    asyncio.run(loop(inputs, recorder).cycle())

    patch = recorder.statuses["done"]
    assert patch["phase"] == "Succeeded"
    assert "placement" in patch and patch["placement"] is None, "only an explicit null deletes a field by merge patch"
    assert "restarts" not in patch, "a restart count read from a lagging watch is never written back"


def test_a_merge_patch_nulls_removed_keys_at_every_level_and_leaves_out_what_is_unchanged():
    old = {"phase": "Running", "placement": {"cards": 8, "islands": ["a"]}, "restarts": 1}
    new = {"phase": "Running", "placement": {"cards": 8}, "message": "ok"}
    assert status_.merge_patch(old, new) == {"placement": {"islands": None}, "restarts": None, "message": "ok"}
    assert status_.merge_patch(new, new) == {}


def test_a_pod_whose_watch_events_came_while_it_was_being_made_is_not_assumed():
    """The watch handler runs while create_gang awaits the API: a rolled-back pod's added and
    deleted events can both arrive before the cycle records what it made. Assumed after that, it
    would hold its cards for ASSUMED_FOR_S although it is gone and the index will never show it."""

    @dataclasses.dataclass
    class Refusing(Recorder):
        loop: scheduler.Scheduler | None = None

        async def create_gang(self, pods):
            await super().create_gang(pods)
            made = pods[0]["metadata"]["name"]
            if len(self.created) == len(pods):  # the first try: the second pod refused, the first rolled back
                self.loop.observed(NAMESPACE, made, f"uid-{made}")  # added, then deleted, meanwhile
                return actuation.Created(False, "refused", uids={made: f"uid-{made}"})
            return actuation.Created(True, uids={p["metadata"]["name"]: f"uid-{p['metadata']['name']}" for p in pods})

    state = [
        scheduler.Inputs([make_node_body(name="n1", product="NVIDIA-H800")], [POOL], [], [make_job("llm", cards=4)])
    ]
    recorder = Refusing()
    recorder.loop = loop(state, recorder)
    asyncio.run(recorder.loop.cycle())
    assert recorder.created == ["llm-worker-0", "llm-worker-1"]
    asyncio.run(recorder.loop.cycle())
    assert recorder.created == ["llm-worker-0", "llm-worker-1"] * 2, "retried at once: nothing holds the cards"
