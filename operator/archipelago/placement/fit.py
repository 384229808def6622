"""Exact fit of one pod on one node, honouring the card model's link rules.

Everything here reads the ledger and never changes it. The greedy placer, the solver's
decoder, the preemption search and the validator all choose and check cards through it, so
they agree on what fits.
"""

from __future__ import annotations

import collections
from collections.abc import Collection

from archipelago import workload
from archipelago.cluster import devices, nodes
from archipelago.cluster import ledger as ledger_
from archipelago.policies import scoring


def links(node: nodes.Node) -> devices.LinkTopology:
    """The node's link rules: its pool's, else its card model's (PCIe-only for a node without cards)."""
    if node.links is not None:
        return node.links
    return devices.model(node.model).links if node.model else devices.PCIE_ONLY


def shape_error(node: nodes.Node, pod: workload.PodRequest, gang_cards: int) -> str | None:
    """Why ``pod`` (in a gang of ``gang_cards`` cards) breaks the link rules of ``node``'s model, or None."""
    if not pod.cards or not node.devices:
        return None
    return links(node).admits(pod.cards, gang_cards, node.card_count)


def admits(node: nodes.Node, pod: workload.PodRequest, gang_cards: int) -> bool:
    """Static fit, ignoring what is free: model, resource, selector, taints and link rules."""
    return scoring.eligible(node, pod) and shape_error(node, pod, gang_cards) is None


def choose(
    ledger: ledger_.Ledger,
    i: int,
    pod: workload.PodRequest,
    gang_cards: int | None = None,
    *,
    within: Collection[int] | None = None,
) -> tuple[int, ...] | None:
    """The cards ``pod`` takes on node ``i``, or None if it does not fit there now.

    Checks cpu, memory, eligibility, link rules and free card capacity. A fractional pod takes
    the usable card with the least free milli. Whole cards come from the link group with the
    fewest usable cards that still holds the pod (keeping other groups whole); a pod larger
    than any group spans the fullest groups first, unless the model is ``strict`` and the pod
    fits one group. ``within`` restricts the choice to those link groups (a gang that requires
    one link group).
    """
    node = ledger.cluster.nodes[i]
    if shape_error(node, pod, pod.cards if gang_cards is None else gang_cards) is not None:
        return None
    usable = scoring.usable_cards(ledger, i, pod)
    if usable is None:
        return None
    if not pod.cards:
        return ()
    if within is not None:
        usable = [j for j in usable if node.devices[j].link_group in within]
        if len(usable) < pod.cards:
            return None
    free = ledger.card_free[i]
    if pod.cards == 1:
        return (scoring.tightest(free, usable),)
    groups: dict[int, list[int]] = collections.defaultdict(list)
    for j in sorted(usable, key=lambda j: (free[j], j)):
        groups[node.devices[j].link_group].append(j)
    fitting = [cards for cards in groups.values() if len(cards) >= pod.cards]
    if fitting:
        return tuple(sorted(min(fitting, key=len)[: pod.cards]))
    rules = links(node)
    if rules.strict and pod.cards <= rules.group_size:
        return None
    chosen: list[int] = []
    for cards in sorted(groups.values(), key=len, reverse=True):
        chosen.extend(cards[: pod.cards - len(chosen)])
        if len(chosen) == pod.cards:
            break
    return tuple(sorted(chosen))


def whole_free(ledger: ledger_.Ledger, i: int) -> list[int]:
    """Node ``i``'s wholly free cards per link group, in group order."""
    node = ledger.cluster.nodes[i]
    size = links(node).group_size
    counts = [0] * -(-node.card_count // size) if node.card_count else []
    for j, f in enumerate(ledger.card_free[i]):
        if f == devices.MILLI_PER_CARD:
            counts[j // size] += 1
    return counts


def slots(node: nodes.Node, free_per_group: list[int], size: int) -> int:
    """How many pods of ``size`` whole cards node could still take: its ``size``-slots.

    Inside one strict link group a pod needs a group with ``size`` free cards; otherwise any
    ``size`` free cards of the node do. Placing a pod of ``k >= size`` cards (``k`` a multiple
    of ``size``) lowers the count by exactly ``k / size`` wherever it lands, which is what
    makes the solver's aggregate capacity exact for power-of-two pods
    (``../shared/notes/cpsat-gang-model.md``).
    """
    rules = links(node)
    if rules.strict and size <= rules.group_size:
        return sum(f // size for f in free_per_group)
    return sum(free_per_group) // size
