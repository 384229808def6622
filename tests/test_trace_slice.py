"""The FGD protocol on a slice of the real openb trace: 150 nodes and 1,200 pods, one seed.

The slice keeps the trace's mix of sharing, whole-card and multi-card pods on its mix of card
models, small enough to run in about a second. The bands are loose on purpose: they catch a
policy that stops packing, not a change of a tenth of a point.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archipelago import cluster
from archipelago.sim import experiment, protocols, scenario, traces

SEED = 42
NODES = 150
PODS = 1_200
POLICIES = ("archipelago", "fgd", "bestfit", "random")
ROUNDING = 0.005 + 1e-9
"""Allocation is recorded rounded to 0.01% (README step 9), the bound is not."""


def openb_dir() -> Path:
    root = Path(os.environ.get("ARCHIPELAGO_TRACES") or Path(__file__).resolve().parents[2] / "shared" / "traces")
    return root / "alibaba-gpu-v2023"


@pytest.fixture(scope="module")
def openb_slice() -> scenario.Scenario:
    root = openb_dir()
    node_file, pod_file = root / "openb_node_list_gpu_node.csv", root / "openb_pod_list_default.csv"
    if not (node_file.exists() and pod_file.exists()):
        pytest.skip(f"the openb trace is not at {root}; set ARCHIPELAGO_TRACES to the traces directory")
    node_list = traces.read_nodes_csv(node_file)[:NODES]
    pods = sorted(traces.read_pods_csv(pod_file), key=lambda p: p.request.name)[:PODS]
    return scenario.Scenario("openb slice", cluster.build(node_list), tuple(pods))


@pytest.fixture(scope="module")
def runs(openb_slice) -> dict[str, protocols.RunResult]:
    return {policy: protocols.run_fgd(openb_slice, policy, SEED) for policy in POLICIES}


def test_the_slice_offers_more_than_its_capacity(openb_slice):
    offered = sum(p.request.milli for p in openb_slice.pods)
    assert openb_slice.capacity_milli > 0
    assert offered > openb_slice.capacity_milli


def test_every_policy_keeps_allocation_within_capacity_and_reaches_kpi_100(runs):
    for policy, run in runs.items():
        assert all(0 <= alloc <= 100 for alloc in run.curve.values()), policy
        assert run.kpi(100) is not None, policy
        assert 0 < run.failed < run.pods, policy


def test_fgd_and_archipelago_pack_the_slice_well_above_random(runs):
    # Observed at seed 42: archipelago 97.2, fgd 96.8, bestfit 95.5, random 92.4.
    random_kpi = runs["random"].kpi(100)
    for policy in ("archipelago", "fgd"):
        assert 95 <= runs[policy].kpi(100) <= 100, policy
        assert runs[policy].kpi(100) > random_kpi + 2, policy
        assert runs[policy].kpi(100) >= runs["bestfit"].kpi(100), policy


def test_the_bound_is_at_least_every_policys_kpi_100(openb_slice, runs):
    limit = experiment.kpi_bound(openb_slice, SEED, 1.3)

    assert limit.converged
    assert limit.pct <= 100
    for policy, run in runs.items():
        assert run.kpi(100) <= limit.pct + ROUNDING, policy
