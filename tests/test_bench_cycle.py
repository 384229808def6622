"""``archipelago bench cycle``: the generated cluster and batch, and the figures it reports."""

from __future__ import annotations

import json
import random

from click.testing import CliRunner

from archipelago import cycle
from archipelago.cli import main
from archipelago.placement import plan
from archipelago.sim import synthetic


def test_the_benchmark_cycle_runs_its_victim_search_not_held_back_by_the_preemption_delay():
    rng = random.Random(0)
    cluster = synthetic.island_cluster(1_000)
    snapshot = synthetic.busy_snapshot(cluster, rng)
    batch = synthetic.pending_batch(cluster, 100, rng)

    result = cycle.run(snapshot, batch, plan.Config(budget_s=1.0))

    assert all(snapshot.now - g.queued_at >= plan.Config().preemption_delay_s for g in batch)
    assert plan.ReasonCode.PREEMPTION_DELAYED not in {w.code for w in result.waiting.values()}
    assert set(result.placed) | set(result.waiting) == {g.name for g in batch}


def test_bench_cycle_reports_its_figures_as_json():
    result = CliRunner().invoke(main, ["bench", "cycle", "--cards", "1000", "--pending-pods", "100", "--json"])

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("cycle_seconds", "pods_per_second", "pods_placed", "peak_rss_mib"):
        assert key in figures
    assert 0 < figures["pods_placed"] <= figures["pending_pods"]
    assert figures["pending_pods"] >= 100 and figures["cards"] == 1000
