"""Placement policies for single pods, all behind ``scoring.Policy``.

``create(name, ledger, context)`` builds one by the name the CLI and the JSON output use.
"""

from __future__ import annotations

from collections.abc import Sequence

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.policies import baselines, default, fgd, scoring

_REGISTRY: dict[str, type[scoring.Policy]] = {
    cls.name: cls
    for cls in (
        default.Archipelago,
        fgd.FGD,
        baselines.BestFit,
        baselines.GpuPacking,
        baselines.GpuClustering,
        baselines.DotProduct,
        baselines.Random,
    )
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def create(name: str, ledger: ledger_.Ledger, context: scoring.Context) -> scoring.Policy:
    """The policy called ``name``; raises ``ValueError`` listing the known names otherwise."""
    return _class(name)(ledger, context)


def _class(name: str) -> type[scoring.Policy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(NAMES)}") from None


def profile(name: str, requests: Sequence[workload.PodRequest]) -> tuple[workload.TypicalTask, ...]:
    """The typical tasks policy ``name`` reads from ``requests`` (see ``scoring.Policy.profile``)."""
    return _class(name).profile(requests)
