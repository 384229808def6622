"""Present experiment results: a terminal table, one JSON object, or a PNG plot."""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

import rich.console
import rich.table

from archipelago.sim import experiment


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(results: experiment.Results) -> rich.table.Table:
    """One row per policy. KPI columns are % of card capacity, means over seeds."""
    plan = results.plan
    seeds = f"{plan.seeds[0]}-{plan.seeds[-1]}" if len(plan.seeds) > 1 else str(plan.seeds[0])
    title = f"{results.scenario}: protocol {plan.protocol}, seeds {seeds}"
    if plan.protocol == "fgd":
        title += f", tuned to {plan.tune:g}x capacity"
    out = rich.table.Table(title=title, title_justify="left")
    out.add_column("policy")
    if plan.protocol == "replay":
        out.add_column("alloc % (time mean)", justify="right")
    out.add_column("KPI(100) %", justify="right")
    out.add_column("min-max", justify="right")
    out.add_column("KPI(130) %", justify="right")
    if plan.bound:
        out.add_column("LP bound %", justify="right")
        out.add_column("gap closed vs fgd", justify="right")
    out.add_column("failed pods", justify="right")
    out.add_column("fragmented milli", justify="right")
    out.add_column("decision ms p50 / p99", justify="right")
    best = max((s.kpi100 for s in results.summaries.values() if s.kpi100 is not None), default=None)
    for name, s in results.summaries.items():
        row = [f"[bold]{name}[/]" if s.kpi100 is not None and s.kpi100 == best else name]
        if plan.protocol == "replay":
            row.append(_pct(s.alloc_time_mean_pct))
        spread = "—" if s.kpi100_min is None else f"{s.kpi100_min:.2f}-{s.kpi100_max:.2f}"
        row += [_pct(s.kpi100), spread, _pct(s.kpi130)]
        if plan.bound:
            closed = results.gap_closed(name)
            row += [_pct(s.bound100), "—" if closed is None else f"{closed:.0f}%"]
        frag = "—" if s.fragmented_milli is None else f"{s.fragmented_milli:,.0f}"
        row += [f"{s.failed:.1f}", frag, f"{s.decision_ms_p50:.3f} / {s.decision_ms_p99:.3f}"]
        out.add_row(*row)
    return out


def print_table(results: experiment.Results, console: rich.console.Console | None = None) -> None:
    if console is None:
        console = rich.console.Console()
        if not console.is_terminal:  # a pipe or a file: don't wrap the table at 80 columns
            console = rich.console.Console(width=160)
    console.print(table(results))


def as_json(results: experiment.Results) -> dict[str, Any]:
    """One object keyed by policy name; allocation figures are % of card capacity (None if unreached)."""
    plan = results.plan
    out: dict[str, Any] = {}
    for name, s in results.summaries.items():
        out[name] = {
            "gpu_alloc_pct_at_100": s.kpi100,
            "gpu_alloc_pct_at_130": s.kpi130,
            "gpu_alloc_pct_min": s.kpi100_min,
            "gpu_alloc_pct_max": s.kpi100_max,
            "failed_pods": s.failed,
            "fragmented_milli_at_100": s.fragmented_milli,
            "decision_ms_p50": s.decision_ms_p50,
            "decision_ms_p99": s.decision_ms_p99,
            "alloc_pct_time_mean": s.alloc_time_mean_pct,
            "bound_pct_at_100": s.bound100,
            "gap_closed_vs_fgd_pct": results.gap_closed(name) if plan.bound else None,
            "scenario": results.scenario,
            "protocol": plan.protocol,
            "tune": plan.tune,
            "seeds": list(plan.seeds),
            "per_seed": [
                {
                    "seed": r.seed,
                    "gpu_alloc_pct_at_100": r.kpi(100),
                    "gpu_alloc_pct_at_130": r.kpi(130),
                    "failed_pods": r.failed,
                    "pods": r.pods,
                    "bound_pct_at_100": results.bounds[r.seed].pct if r.seed in results.bounds else None,
                }
                for r in s.runs
            ],
        }
    return out


def dumps(results: experiment.Results) -> str:
    return json.dumps(as_json(results), indent=2)


def plot(results: experiment.Results, path: str | os.PathLike) -> None:
    """A PNG of allocation against arrived demand (both % of capacity), one line per policy.

    Raises ``RuntimeError`` if matplotlib is not installed (``pip install 'archipelago[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError("plotting needs matplotlib: pip install 'archipelago[plot]'") from None
    figure, axes = pyplot.subplots(figsize=(8, 5))
    for name, s in results.summaries.items():
        buckets = sorted(set().union(*(r.curve for r in s.runs)))
        means = [statistics.fmean(r.curve[b] for r in s.runs if b in r.curve) for b in buckets]
        axes.plot(buckets, means, label=name, linewidth=2 if name == "archipelago" else 1)
    axes.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=1, label="demand = capacity")
    axes.set_xlabel("arrived card demand (% of capacity)")
    axes.set_ylabel("cards allocated (% of capacity)")
    axes.set_title(f"{results.scenario}: allocation as demand arrives ({results.plan.protocol} protocol)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
