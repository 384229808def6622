"""The allocation ledger: exact accounting, refusals that change nothing, and no over-commit."""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from archipelago.cluster import ledger as ledger_
from tests.builders import make_cluster, make_ledger, make_node, occupy

GIB = 1024
H800_MEMORY = 80 * GIB


def two_node_ledger() -> ledger_.Ledger:
    return make_ledger(
        make_cluster(
            make_node(name="h", cards=4, model="H800", cpu_milli=16_000, memory_mib=64 * GIB),
            make_node(name="g", cards=2, model="G2", cpu_milli=8_000, memory_mib=32 * GIB),
        )
    )


def state(ledger: ledger_.Ledger) -> dict:
    """Every observable field of the ledger, deep-copied."""
    return copy.deepcopy(
        {
            "cpu_free": ledger.cpu_free,
            "memory_free": ledger.memory_free,
            "card_free": ledger.card_free,
            "card_memory_free": ledger.card_memory_free,
            "capacity_milli": ledger.capacity_milli,
            "allocated_milli": ledger.allocated_milli,
            "generation": ledger.generation,
            "node_generation": ledger.node_generation.tolist(),
            "allocations": list(ledger.allocations()),
            "on_node": [ledger.on_node(i) for i in range(len(ledger.cluster))],
            "len": len(ledger),
        }
    )


def share(card: int, milli: int, memory_mib: int = 0) -> ledger_.CardShare:
    return ledger_.CardShare(card=card, milli=milli, memory_mib=memory_mib)


def test_fresh_ledger_has_all_capacity_free():
    ledger = two_node_ledger()
    assert ledger.cpu_free == [16_000, 8_000]
    assert ledger.memory_free == [64 * GIB, 32 * GIB]
    assert ledger.card_free == [[1000] * 4, [1000] * 2]
    assert ledger.card_memory_free == [[H800_MEMORY] * 4, [0, 0]]
    assert (ledger.capacity_milli, ledger.allocated_milli, len(ledger)) == (6000, 0, 0)


def test_allocate_takes_exactly_what_is_asked():
    ledger = two_node_ledger()
    ledger.allocate(
        ledger_.Allocation("p", node=0, cpu_milli=3000, memory_mib=GIB, shares=(share(1, 250, GIB), share(3, 1000)))
    )
    assert ledger.cpu_free == [13_000, 8_000]
    assert ledger.memory_free == [63 * GIB, 32 * GIB]
    assert ledger.card_free[0] == [1000, 750, 1000, 0]
    assert ledger.card_memory_free[0] == [H800_MEMORY, H800_MEMORY - GIB, H800_MEMORY, H800_MEMORY]
    assert ledger.allocated_milli == 1250
    assert "p" in ledger and ledger.get("p").milli == 1250


def test_release_gives_back_exactly_what_was_taken():
    ledger = two_node_ledger()
    before = state(ledger)
    allocation = ledger_.Allocation("p", node=0, cpu_milli=3000, memory_mib=GIB, shares=(share(1, 250, GIB),))
    ledger.allocate(allocation)
    assert ledger.release("p") == allocation
    after = state(ledger)
    for field in ("generation", "node_generation"):
        del before[field], after[field]
    assert after == before


def test_a_card_can_be_filled_to_exactly_its_capacity_and_no_further():
    ledger = two_node_ledger()
    occupy(ledger, "h", milli={0: 600})
    occupy(ledger, "h", milli={0: 400})
    assert ledger.card_free[0][0] == 0
    with pytest.raises(ledger_.CapacityError):
        occupy(ledger, "h", milli={0: 1})


def test_node_cpu_and_memory_can_be_used_to_exactly_their_capacity():
    ledger = two_node_ledger()
    occupy(ledger, "g", cpu_milli=8000, memory_mib=32 * GIB)
    assert (ledger.cpu_free[1], ledger.memory_free[1]) == (0, 0)


REFUSED = {
    "too-much-cpu": ledger_.Allocation("x", node=0, cpu_milli=16_001),
    "too-much-memory": ledger_.Allocation("x", node=0, memory_mib=64 * GIB + 1),
    "negative-cpu": ledger_.Allocation("x", node=0, cpu_milli=-1),
    "negative-memory": ledger_.Allocation("x", node=0, memory_mib=-1),
    "unknown-node": ledger_.Allocation("x", node=2),
    "negative-node": ledger_.Allocation("x", node=-1),
    "unknown-card": ledger_.Allocation("x", node=1, shares=(share(2, 100),)),
    "negative-card": ledger_.Allocation("x", node=0, shares=(share(-1, 100),)),
    "card-listed-twice": ledger_.Allocation("x", node=0, shares=(share(1, 100), share(1, 100))),
    "zero-milli-share": ledger_.Allocation("x", node=0, shares=(share(1, 0),)),
    "share-above-a-card": ledger_.Allocation("x", node=0, shares=(share(1, 1001),)),
    "negative-share-memory": ledger_.Allocation("x", node=0, shares=(share(1, 100, -1),)),
    "more-milli-than-free": ledger_.Allocation("x", node=0, shares=(share(0, 501),)),
    "more-card-memory-than-free": ledger_.Allocation("x", node=0, shares=(share(2, 1, H800_MEMORY + 1),)),
    "card-memory-on-unknown-model": ledger_.Allocation("x", node=1, shares=(share(0, 1, 1),)),
    "last-share-does-not-fit": ledger_.Allocation(
        "x", node=0, cpu_milli=1, memory_mib=1, shares=(share(1, 1000), share(2, 1000), share(0, 1000))
    ),
    "duplicate-pod": ledger_.Allocation("held", node=1, cpu_milli=1),
}


@pytest.mark.parametrize("allocation", REFUSED.values(), ids=REFUSED.keys())
def test_refused_allocation_leaves_every_field_of_the_ledger_unchanged(allocation):
    ledger = two_node_ledger()
    occupy(ledger, "h", milli={0: 500}, cpu_milli=1000, pod="held")
    before = state(ledger)
    with pytest.raises(ledger_.CapacityError):
        ledger.allocate(allocation)
    assert state(ledger) == before


def test_a_pod_key_can_hold_only_one_allocation():
    ledger = two_node_ledger()
    occupy(ledger, "h", milli={0: 100}, pod="p")
    with pytest.raises(ledger_.CapacityError, match="already holds"):
        occupy(ledger, "g", milli={0: 100}, pod="p")


def test_a_released_pod_key_can_be_used_again():
    ledger = two_node_ledger()
    occupy(ledger, "h", milli={0: 100}, pod="p")
    ledger.release("p")
    occupy(ledger, "g", milli={0: 100}, pod="p")
    assert ledger.get("p").node == 1


def test_releasing_an_unknown_pod_raises_key_error_and_changes_nothing():
    ledger = two_node_ledger()
    occupy(ledger, "h", milli={0: 100}, pod="p")
    before = state(ledger)
    with pytest.raises(KeyError):
        ledger.release("nobody")
    assert state(ledger) == before
    ledger.release("p")
    with pytest.raises(KeyError):
        ledger.release("p")


def test_unhealthy_cards_have_no_capacity():
    ledger = make_ledger(make_cluster(make_node(cards=4, model="H800", unhealthy=[1, 2])))
    assert ledger.card_free == [[1000, 0, 0, 1000]]
    assert ledger.card_memory_free == [[H800_MEMORY, 0, 0, H800_MEMORY]]
    assert ledger.capacity_milli == 2000
    with pytest.raises(ledger_.CapacityError):
        occupy(ledger, 0, milli={1: 1})


def test_device_memory_is_accounted_per_card():
    ledger = make_ledger(make_cluster(make_node(cards=2, model="H800")))
    occupy(ledger, 0, milli={0: 300}, card_memory_mib={0: 40 * GIB})
    occupy(ledger, 0, milli={0: 300}, card_memory_mib={0: 40 * GIB})
    assert ledger.card_memory_free == [[0, H800_MEMORY]]
    with pytest.raises(ledger_.CapacityError, match="memory"):
        occupy(ledger, 0, milli={0: 100}, card_memory_mib={0: 1})
    occupy(ledger, 0, milli={0: 100})  # milli is still free, and this share needs no memory
    occupy(ledger, 0, milli={1: 100}, card_memory_mib={1: H800_MEMORY})
    assert ledger.card_free == [[300, 900]]


def test_generation_counts_changes_and_stamps_the_node_that_changed():
    ledger = two_node_ledger()
    assert (ledger.generation, ledger.node_generation.tolist()) == (0, [0, 0])
    occupy(ledger, "g", milli={0: 100}, pod="a")
    assert (ledger.generation, ledger.node_generation.tolist()) == (1, [0, 1])
    occupy(ledger, "h", milli={0: 100}, pod="b")
    assert (ledger.generation, ledger.node_generation.tolist()) == (2, [2, 1])
    ledger.release("a")
    assert (ledger.generation, ledger.node_generation.tolist()) == (3, [2, 3])
    with pytest.raises(ledger_.CapacityError):
        occupy(ledger, "h", milli={0: 1000})
    with pytest.raises(KeyError):
        ledger.release("a")
    assert (ledger.generation, ledger.node_generation.tolist()) == (3, [2, 3])


def test_allocations_on_a_node_are_listed_oldest_first():
    ledger = two_node_ledger()
    for name in ("c", "a", "b"):
        occupy(ledger, "h", milli={0: 100}, pod=name)
    occupy(ledger, "g", milli={0: 100}, pod="z")
    assert [a.pod for a in ledger.on_node(0)] == ["c", "a", "b"]
    assert [a.pod for a in ledger.on_node(1)] == ["z"]
    ledger.release("a")
    assert [a.pod for a in ledger.on_node(0)] == ["c", "b"]
    assert sorted(a.pod for a in ledger.allocations()) == ["b", "c", "z"]


# --- property: no sequence of calls over-commits, and accounting is exact ------------------

PROPERTY_CLUSTER = make_cluster(
    make_node(name="h800", cards=4, model="H800", cpu_milli=8_000, memory_mib=16 * GIB),
    make_node(name="ascend", cards=8, model="Ascend910", cpu_milli=4_000, memory_mib=8 * GIB, unhealthy=[5]),
    make_node(name="g2", cards=2, model="G2", cpu_milli=2_000, memory_mib=4 * GIB),
    make_node(name="cpu", cards=0, cpu_milli=2_000, memory_mib=4 * GIB),
)

# Mostly plausible values, with some that must be refused (out of range, too big, negative).
share_strategy = st.builds(
    ledger_.CardShare,
    card=st.one_of(st.integers(0, 3), st.integers(-1, 8)),
    milli=st.one_of(st.integers(1, 700), st.sampled_from([0, 1000, 1001])),
    memory_mib=st.one_of(st.just(0), st.integers(1, 40 * GIB), st.just(-1)),
)


class LedgerMachine(RuleBasedStateMachine):
    """Random allocate/release calls; a shadow model says which calls must succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = make_ledger(PROPERTY_CLUSTER)
        self.held: dict[str, ledger_.Allocation] = {}
        self.count = 0
        self.aside: tuple[ledger_.Ledger, dict, dict] | None = None
        """A ledger set aside by ``fork``, what it held, and its state then: nothing the active
        ledger does may change it, although they share lists until written (copy-on-write)."""

    def fits(self, a: ledger_.Allocation) -> bool:
        """Independent of ``Ledger.check``: recompute free capacity from the shadow model."""
        if a.pod in self.held or not 0 <= a.node < len(PROPERTY_CLUSTER) or a.cpu_milli < 0 or a.memory_mib < 0:
            return False
        node = PROPERTY_CLUSTER.nodes[a.node]
        others = [h for h in self.held.values() if h.node == a.node]
        if a.cpu_milli + sum(h.cpu_milli for h in others) > node.cpu_milli:
            return False
        if a.memory_mib + sum(h.memory_mib for h in others) > node.memory_mib:
            return False
        if len({s.card for s in a.shares}) != len(a.shares):
            return False
        for s in a.shares:
            if not 0 <= s.card < node.card_count or not 1 <= s.milli <= 1000 or s.memory_mib < 0:
                return False
            device = node.devices[s.card]
            used = [t for h in others for t in h.shares if t.card == s.card]
            capacity, memory = (1000, device.memory_mib) if device.healthy else (0, 0)
            if s.milli + sum(t.milli for t in used) > capacity:
                return False
            if s.memory_mib + sum(t.memory_mib for t in used) > memory:
                return False
        return True

    @rule(data=st.data(), node=st.integers(0, len(PROPERTY_CLUSTER) - 1))
    def allocate_plausible(self, data, node):
        """A request shaped like a real pod's: existing cards, modest amounts; may still not fit."""
        count = PROPERTY_CLUSTER.nodes[node].card_count
        cards = data.draw(st.lists(st.integers(0, count - 1), unique=True, max_size=3)) if count else []
        shares = tuple(
            ledger_.CardShare(
                card,
                data.draw(st.one_of(st.integers(1, 500), st.just(1000))),
                data.draw(st.one_of(st.just(0), st.integers(1, 40 * GIB))),
            )
            for card in cards
        )
        self.try_allocate(
            node, data.draw(st.integers(0, 2_500)), data.draw(st.integers(0, 5 * GIB)), shares, reuse_name=False
        )

    @rule(
        node=st.one_of(st.integers(0, 3), st.sampled_from([-1, 4])),
        cpu=st.one_of(st.integers(0, 3_000), st.sampled_from([-1, 9_000])),
        memory=st.one_of(st.integers(0, 6 * GIB), st.sampled_from([-1, 17 * GIB])),
        shares=st.lists(share_strategy, max_size=3),
        reuse_name=st.booleans(),
    )
    def allocate_anything(self, node, cpu, memory, shares, reuse_name):
        self.try_allocate(node, cpu, memory, tuple(shares), reuse_name)

    def try_allocate(self, node, cpu, memory, shares, reuse_name):
        name = next(iter(self.held)) if reuse_name and self.held else f"p{self.count}"
        self.count += 1
        a = ledger_.Allocation(name, node=node, cpu_milli=cpu, memory_mib=memory, shares=shares)
        expected = self.fits(a)
        before = state(self.ledger)
        try:
            self.ledger.allocate(a)
        except ledger_.CapacityError:
            assert not expected, f"refused a fitting allocation {a}"
            assert state(self.ledger) == before
        else:
            assert expected, f"accepted an over-committing allocation {a}"
            self.held[name] = a

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release_held(self, data):
        name = data.draw(st.sampled_from(sorted(self.held)))
        assert self.ledger.release(name) == self.held.pop(name)

    @rule(name=st.sampled_from(["nobody", "p0", "p3"]))
    def release_unknown(self, name):
        if name in self.held:
            return
        before = state(self.ledger)
        with pytest.raises(KeyError):
            self.ledger.release(name)
        assert state(self.ledger) == before

    @rule(keep_original=st.booleans())
    def fork(self, keep_original):
        """Copy the ledger; go on with the original or the copy, and set the other aside."""
        other = self.ledger.copy()
        active, aside = (self.ledger, other) if keep_original else (other, self.ledger)
        self.ledger, self.aside = active, (aside, dict(self.held), state(aside))

    @precondition(lambda self: self.aside is not None)
    @rule()
    def resume(self):
        """Go back to the ledger set aside, and set the active one aside in its place."""
        ledger, held, _ = self.aside
        self.aside = (self.ledger, self.held, state(self.ledger))
        self.ledger, self.held = ledger, held

    @invariant()
    def a_ledger_set_aside_never_changes(self):
        if self.aside is not None:
            assert state(self.aside[0]) == self.aside[2]

    @invariant()
    def free_plus_held_is_capacity_exactly(self):
        ledger = self.ledger
        for i, node in enumerate(PROPERTY_CLUSTER.nodes):
            on_node = [h for h in self.held.values() if h.node == i]
            assert 0 <= ledger.cpu_free[i] <= node.cpu_milli
            assert 0 <= ledger.memory_free[i] <= node.memory_mib
            assert ledger.cpu_free[i] + sum(h.cpu_milli for h in on_node) == node.cpu_milli
            assert ledger.memory_free[i] + sum(h.memory_mib for h in on_node) == node.memory_mib
            for device in node.devices:
                j = device.index
                capacity, memory = (1000, device.memory_mib) if device.healthy else (0, 0)
                shares = [s for h in on_node for s in h.shares if s.card == j]
                assert 0 <= ledger.card_free[i][j] <= capacity
                assert 0 <= ledger.card_memory_free[i][j] <= memory
                assert ledger.card_free[i][j] + sum(s.milli for s in shares) == capacity
                assert ledger.card_memory_free[i][j] + sum(s.memory_mib for s in shares) == memory
            assert sorted(a.pod for a in ledger.on_node(i)) == sorted(h.pod for h in on_node)

    @invariant()
    def allocated_milli_is_the_sum_of_held_shares(self):
        assert self.ledger.allocated_milli == sum(s.milli for h in self.held.values() for s in h.shares)
        assert self.ledger.capacity_milli == 4000 + 7000 + 2000
        assert len(self.ledger) == len(self.held)


TestLedgerNeverOverCommits = LedgerMachine.TestCase
TestLedgerNeverOverCommits.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
