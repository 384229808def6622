"""What a scheduling cycle reads and what it returns, as plain values.

Units: cards in whole cards, shares in milli-cards, time in seconds, lost work in
card-seconds.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from archipelago import workload
from archipelago.cluster import ledger as ledger_


class Queueing(enum.Enum):
    """Which gangs of one priority a cycle admits first when not all of them fit.

    Priority always comes first: no strategy runs a lower-priority gang in place of a
    higher-priority one that fits. The names follow Kueue's ClusterQueue ``queueingStrategy``.
    """

    MOST_CARDS = "MostCards"
    """The plan that admits the most cards of the priority, whatever their queue order: a later
    larger gang may run in place of earlier smaller ones. Serves large gangs sooner; small
    ones wait longer on a saturated model (BENCHMARKS.md, section 4)."""
    BEST_EFFORT_FIFO = "BestEffortFIFO"
    """Kueue's ``BestEffortFIFO``: gangs start in queue order (priority, then arrival), and a
    later gang that fits may start while an earlier one that does not waits. The solver keeps
    every gang the queue order admits and only adds to them, moves them or places them better."""
    MOST_GANGS = "MostGangs"
    """The plan that starts the most gangs of the priority, whatever their size; the queue
    within a priority runs smallest gang first (fewest cards, then arrival). Smallest-first
    lowers the waits of the many small gangs at the cost of the few large ones, whose wait has
    no bound while smaller gangs of their priority keep fitting (Feitelson et al., "Theory and
    Practice in Parallel Job Scheduling", JSSPP 1997; BENCHMARKS.md, section 4: on the gang
    replay, high-priority gangs of 32-256 cards waited 20 times longer than under MOST_CARDS)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """How one cycle runs.

    ``budget_s``: wall-clock budget of the whole cycle; the solver gets what is left after the
    snapshot, the greedy hint and the model build. ``seed`` and ``workers`` make CP-SAT
    repeatable: with one worker a given seed gives the same plan unless the wall-clock budget
    cuts the search short. ``solver=False`` answers with the greedy placer alone;
    ``preemption=False`` never evicts. ``queueing``: a ``Queueing`` or its value; raises
    ``ValueError`` for any other.
    """

    budget_s: float = 1.0
    seed: int = 0
    workers: int = 1
    solver: bool = True
    preemption: bool = True
    island_penalty: int = 1
    """Objective cost of each domain a ``preferred`` gang spans beyond its first."""
    preemption_delay_s: float = 30.0
    """Seconds a gang must have waited (since ``queued_at``) before it may preempt.

    Capacity that frees by itself within the delay costs nobody lost work; preempting at once
    evicts gangs for a wait that departures would have ended. Apache YuniKorn's queue property
    ``preemption.delay`` does the same, with the same 30 s default (YUNIKORN-1464). 0 preempts
    in the first cycle that finds a gang waiting.
    """
    preemption_exempt_s: float = 0.0
    """Seconds a gang runs, from its latest start, before it may be preempted: Slurm's
    ``PreemptExemptTime``. Without it a gang that has just (re)started, whose lost work is near
    zero, is the cheapest victim and may be evicted over and over, before it has even finished
    starting (on the A100 share of the gang replay, one spot gang six times). 0 (the default,
    as Slurm's): at any time. On the gang replay 60 s lowered the mean queueing delay but also
    the share of gangs in one island on most replays (BENCHMARKS.md, section 4), and the
    objective puts islands first, so it is not the default.
    """
    queueing: Queueing = Queueing.MOST_CARDS
    spread_delay_s: float = 0.0
    """Seconds a gang whose topology is ``preferred`` waits for one domain of its level before
    it may spread over several: until then it is placed as if the level were ``required``
    (reason ``SPREAD_DELAYED`` while it waits for that). Slurm's ``--switches=1@max-time``,
    whose cluster-wide cap ``max_switch_wait`` defaults to 300 s. A gang no domain of the level
    could hold even empty spreads at once. 0 (the default): it spreads in the first cycle that
    finds no single domain free.
    """

    def __post_init__(self) -> None:
        if self.budget_s <= 0:
            raise ValueError(f"budget_s must be positive seconds, got {self.budget_s}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.preemption_delay_s < 0:
            raise ValueError(f"preemption_delay_s must not be negative seconds, got {self.preemption_delay_s}")
        if self.preemption_exempt_s < 0:
            raise ValueError(f"preemption_exempt_s must not be negative seconds, got {self.preemption_exempt_s}")
        if self.spread_delay_s < 0:
            raise ValueError(f"spread_delay_s must not be negative seconds, got {self.spread_delay_s}")
        if not isinstance(self.queueing, Queueing):  # its value, as the command line and Helm spell it
            if self.queueing not in {q.value for q in Queueing}:
                choices = ", ".join(q.value for q in Queueing)
                raise ValueError(f"queueing must be one of {choices}, got {self.queueing!r}")
            object.__setattr__(self, "queueing", Queueing(self.queueing))


@dataclasses.dataclass(frozen=True)
class Running:
    """A gang that holds allocations: its spec, the pods placed, and when it started.

    ``checkpointed_at`` is the last checkpoint (seconds), if the job reports one: work since
    then is what preemption loses.
    """

    gang: workload.Gang
    pods: tuple[str, ...]
    started_at: float = 0.0
    checkpointed_at: float | None = None

    def progress_since(self, now: float) -> float:
        """Seconds of work that preempting the gang at ``now`` throws away."""
        since = self.started_at if self.checkpointed_at is None else max(self.started_at, self.checkpointed_at)
        return max(0.0, now - since)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The cluster as one cycle sees it. The cycle never mutates ``ledger``.

    ``running`` maps gang name to ``Running`` for every gang whose pods the ledger holds;
    ``now`` is the cycle's clock (seconds), injected so the simulator and the operator share
    the code.
    """

    ledger: ledger_.Ledger
    running: Mapping[str, Running] = dataclasses.field(default_factory=dict)
    now: float = 0.0


class ReasonCode(enum.StrEnum):
    """Why a gang waits. PascalCase, machine-readable; the message carries the numbers."""

    INVALID_SHAPE = "InvalidShape"
    """A pod breaks its card model's link rules (an Ascend pod of 3 cards) on every allowed model."""
    NO_MATCHING_NODES = "NoMatchingNodes"
    """No node has an allowed model, matches the node selector and tolerates its taints."""
    EXCEEDS_CLUSTER = "ExceedsCluster"
    """More than every matching node holds, even empty."""
    TOPOLOGY_TOO_SMALL = "TopologyTooSmall"
    """A required domain: no domain of that level is big enough, even empty."""
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    """Not enough free capacity on matching nodes now."""
    TOPOLOGY_FRAGMENTED = "TopologyFragmented"
    """Enough free capacity in all, but no single domain of the required level holds the gang."""
    NODE_FRAGMENTED = "NodeFragmented"
    """Enough free cards in all, but spread so no node (or link group) holds a pod."""
    PREEMPTION_INSUFFICIENT = "PreemptionInsufficient"
    """Even evicting every lower-priority preemptible gang would not make room."""
    PREEMPTION_DELAYED = "PreemptionDelayed"
    """Lower-priority preemptible gangs hold room, but the gang has not waited ``Config.preemption_delay_s``."""
    PREEMPTION_EXEMPT = "PreemptionExempt"
    """Evicting lower-priority preemptible gangs would make room, but some of those needed have run
    less than ``Config.preemption_exempt_s``."""
    SPREAD_DELAYED = "SpreadDelayed"
    """A ``preferred`` gang fits only spread over several domains of its level, and waits for
    one until it has waited ``Config.spread_delay_s``."""
    HELD_FOR_HIGHER_PRIORITY = "HeldForHigherPriority"
    """It would fit an empty queue, but gangs of higher (or equal, earlier) priority took the room."""


@dataclasses.dataclass(frozen=True)
class Wait:
    """Why ``gang`` stays pending this cycle: a reason code and a sentence with numbers."""

    gang: str
    code: ReasonCode
    message: str


@dataclasses.dataclass(frozen=True)
class Eviction:
    """Pods of a running gang to evict so that higher-priority gangs fit.

    ``whole``: the entire gang goes (and is requeued); otherwise an elastic gang shrinks to no
    fewer than its ``min_member`` pods. ``lost_card_seconds`` is the work thrown away.
    ``for_gang`` names the pending gang it makes room for.
    """

    gang: str
    pods: tuple[str, ...]
    whole: bool
    lost_card_seconds: float
    for_gang: str


@dataclasses.dataclass
class Stats:
    """How the cycle went: timings (seconds) and what the solver added over its hint."""

    seconds: float = 0.0
    greedy_seconds: float = 0.0
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    solver_status: str = "skipped"
    greedy_objective: int = 0
    solver_objective: int = 0
    variables: int = 0
    used: str = "greedy"
    """Which answer the plan carries: ``greedy`` or ``solver`` (never worse than greedy)."""


@dataclasses.dataclass
class Plan:
    """The outcome of one cycle.

    ``placed`` maps gang name to the allocations of its pods (at least ``min_member`` of them);
    ``evictions`` must happen before those placements; ``waiting`` gives every pending gang not
    placed its reason. ``retry_at`` (seconds, on the snapshot's clock) is the earliest time a
    cycle may decide differently with nothing else changed: when a gang held back by
    ``Config.preemption_delay_s`` may first preempt. None: only an event can change the plan.
    """

    placed: dict[str, tuple[ledger_.Allocation, ...]] = dataclasses.field(default_factory=dict)
    evictions: list[Eviction] = dataclasses.field(default_factory=list)
    waiting: dict[str, Wait] = dataclasses.field(default_factory=dict)
    stats: Stats = dataclasses.field(default_factory=Stats)
    retry_at: float | None = None

    @property
    def pods_placed(self) -> int:
        return sum(len(allocations) for allocations in self.placed.values())
