"""Present gang replay results: a terminal table, or one JSON object keyed by scheduler."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import rich.console
import rich.table

from archipelago.sim import gang_replay

FIGURES = (
    "gpu_alloc_pct",
    "gangs",
    "gangs_placed",
    "gangs_single_island_pct",
    "gangs_single_island_all_pct",
    "gangs_fewest_islands_pct",
    "queue_delay_mean_s",
    "queue_delay_p95_s",
    "preemptions",
    "gangs_preempted",
    "preemptions_max_per_gang",
    "shrinks",
    "lost_card_seconds",
    "cycles",
    "cycle_ms_p50",
    "cycle_ms_p99",
    "end_s",
)
"""The keys of each scheduler's JSON object, all fields of ``gang_replay.Result``."""


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(results: Mapping[str, gang_replay.Result], title: str) -> rich.table.Table:
    """One row per scheduler; the best allocation is bold."""
    out = rich.table.Table(title=title, title_justify="left")
    for column in (
        "scheduler",
        "alloc % (time mean)",
        "gangs placed",
        "one island % (multi-node / all)",
        "fewest islands %",
        "queue delay s mean / p95",
        "preempted / shrunk",
        "cycle ms p50 / p99",
    ):
        out.add_column(column, justify="left" if column == "scheduler" else "right")
    best = max((r.gpu_alloc_pct for r in results.values()), default=None)
    for name, r in results.items():
        out.add_row(
            f"[bold]{name}[/]" if r.gpu_alloc_pct == best else name,
            _num(r.gpu_alloc_pct, 2),
            f"{r.gangs_placed} of {r.gangs}",
            f"{_num(r.gangs_single_island_pct)} / {_num(r.gangs_single_island_all_pct)}",
            _num(r.gangs_fewest_islands_pct),
            f"{_num(r.queue_delay_mean_s, 0)} / {_num(r.queue_delay_p95_s, 0)}",
            f"{r.preemptions} / {r.shrinks}",
            f"{_num(r.cycle_ms_p50, 2)} / {_num(r.cycle_ms_p99, 2)}",
        )
    return out


def print_table(
    results: Mapping[str, gang_replay.Result], title: str, console: rich.console.Console | None = None
) -> None:
    if console is None:
        console = rich.console.Console()
        if not console.is_terminal:  # a pipe or a file: don't wrap the table at 80 columns
            console = rich.console.Console(width=160)
    console.print(table(results, title))


def as_json(results: Mapping[str, gang_replay.Result], **context: Any) -> dict[str, Any]:
    """One object per scheduler with ``FIGURES`` (shares in %, times in seconds), plus ``context``."""
    return {
        name: {**{key: value for key, value in dataclasses.asdict(r).items() if key in FIGURES}, **context}
        for name, r in results.items()
    }


def dumps(results: Mapping[str, gang_replay.Result], **context: Any) -> str:
    return json.dumps(as_json(results, **context), indent=2)
