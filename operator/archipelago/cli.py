"""The ``archipelago`` command line."""

from __future__ import annotations

import json
import pathlib
import sys
import threading
from collections.abc import Callable
from typing import Any

import click
import rich.console
import rich.progress

from archipelago import cluster, policies
from archipelago.placement import plan as plan_
from archipelago.sim import (
    demo,
    experiment,
    gang_replay,
    gang_report,
    gangs,
    inputs,
    protocols,
    report,
    scenario,
    specs,
    traces,
)

PROGRESS_AFTER_S = 2.0
"""Runs shorter than this show no progress bar."""
GANG_WORKLOAD = "gangs"
"""The ``--workload`` value that asks for the generated gang workload."""
GANG_SCHEDULERS = ("archipelago", "greedy", "volcano-like")
GANGS_DEFAULT = 150
GANG_LOAD_DEFAULT = 1.2
"""Defaults of the generated gang workload: a run of a few seconds on the demo cluster."""


def _waits(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--preemption-delay``, ``--preemption-exempt`` and ``--spread-delay`` options
    (seconds, defaults ``plan.Config``'s), their help starting with ``what``."""
    options = (
        (
            "--preemption-delay",
            plan_.Config.preemption_delay_s,
            "a gang waits before it may preempt",
            "YuniKorn's preemption.delay",
        ),
        (
            "--preemption-exempt",
            plan_.Config.preemption_exempt_s,
            "a gang runs, from its latest start, before it may be preempted",
            "Slurm's PreemptExemptTime",
        ),
        (
            "--spread-delay",
            plan_.Config.spread_delay_s,
            "a gang whose topology is Preferred waits for one domain of its level before it spreads",
            "Slurm's --switches=1@max-time",
        ),
    )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for flag, default, text, source in reversed(options):
            seconds = click.FloatRange(min=0)
            help_ = f"{what} {text} (as {source})."
            command = click.option(flag, default=default, show_default=True, type=seconds, help=help_)(command)
        return command

    return decorate


def _queueing(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--queueing`` option (a ``plan.Queueing``, default ``plan.Config``'s), its help starting with ``what``."""
    return click.option(
        "--queueing",
        default=plan_.Config.queueing.value,
        show_default=True,
        type=click.Choice([q.value for q in plan_.Queueing]),
        callback=lambda _ctx, _param, value: plan_.Queueing(value),
        help=f"{what}which gangs of one priority start first when not all fit: MostCards, the plan with "
        "the most cards; BestEffortFIFO, queue order with later gangs filling in (as Kueue's); MostGangs, "
        "the plan with the most gangs, smallest first.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archipelago")
def main() -> None:
    """Archipelago: topology-aware scheduling for heterogeneous GPU/NPU clusters."""


def _seeds(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    seeds: list[int] = []
    try:
        for part in value.split(","):
            first, dash, last = part.strip().partition("-")
            seeds.extend(range(int(first), int(last if dash else first) + 1))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use a seed (42), a range (42-51) or a list (42,44)") from None
    if not seeds:
        raise click.BadParameter(f"{value!r} names no seed; use e.g. 42-51")
    return tuple(seeds)


def _names(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    """Split a comma-separated list; ``experiment.Plan`` checks the names."""
    return tuple(n.strip() for n in value.split(",") if n.strip())


@main.command()
@click.option("--nodes", type=click.Path(dir_okay=False), help="Nodes CSV (openb or spot-GPU trace format).")
@click.option("--pods", type=click.Path(dir_okay=False), help="Pods CSV (openb trace format).")
@click.option("--cluster", "cluster_yaml", type=click.Path(dir_okay=False), help="Cluster YAML (instead of --nodes).")
@click.option(
    "--workload",
    "workload_yaml",
    type=click.Path(dir_okay=False),
    help="Workload YAML (instead of --pods), or 'gangs' for the generated gang workload.",
)
@click.option("--protocol", type=click.Choice(protocols.PROTOCOLS), default="fgd", show_default=True)
@click.option(
    "--policies",
    "policy_names",
    default=",".join(policies.NAMES),
    show_default=True,
    callback=_names,
    help="Comma-separated policies to compare.",
)
@click.option("--seeds", default="42-44", show_default=True, callback=_seeds, help="Seeds: 42, 42-51 or 42,44.")
@click.option("--seed", default=42, show_default=True, type=int, help="Gang workload: the one seed.")
@click.option(
    "--gangs",
    "gang_count",
    default=GANGS_DEFAULT,
    show_default=True,
    type=click.IntRange(min=1),
    help="Gang workload: gangs to generate.",
)
@click.option(
    "--load",
    default=GANG_LOAD_DEFAULT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Gang workload: card-seconds offered in the arrival window, as a multiple of capacity.",
)
@click.option(
    "--period",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Gang workload: run the scheduler every PERIOD simulated seconds (0: after every event).",
)
@_waits("Gang workload: seconds")
@_queueing("Gang workload: ")
@click.option(
    "--tune", default=1.3, show_default=True, type=float, help="fgd protocol: demand as a multiple of capacity."
)
@click.option("--bound", is_flag=True, help="Also compute the LP upper bound at KPI(100) (fgd protocol).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object keyed by policy instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG of allocation against arrived demand.")
@click.option("--jobs", type=click.IntRange(min=1), help="Parallel processes (default: one per core).")
def simulate(
    nodes: str | None,
    pods: str | None,
    cluster_yaml: str | None,
    workload_yaml: str | None,
    protocol: str,
    policy_names: tuple[str, ...],
    seeds: tuple[int, ...],
    seed: int,
    gang_count: int,
    load: float,
    period: float,
    preemption_delay: float,
    preemption_exempt: float,
    spread_delay: float,
    queueing: plan_.Queueing,
    tune: float,
    bound: bool,
    as_json: bool,
    plot: str | None,
    jobs: int | None,
) -> None:
    """Replay a workload through the placement policies and compare them.

    With no input files it runs the built-in demo: 448 GPU/NPU cards in four islands and a
    day of mixed fractional inference and training. Give --nodes and --pods for an Alibaba
    trace, or --cluster and --workload for YAML files.

    --workload gangs replays generated gangs (Helios and Acme job statistics) through the gang
    schedulers archipelago, greedy and volcano-like, on the demo cluster, on --cluster, or on
    --nodes with islands of 32 nodes laid over it. A YAML file with a top-level 'gangs' list
    is a gang workload too.

    \b
    Example, the FGD paper's protocol on the real trace:
      archipelago simulate --nodes ../shared/traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv \\
        --pods ../shared/traces/alibaba-gpu-v2023/openb_pod_list_default.csv --seeds 42-51 --bound
    Example, gangs on the spot-GPU node list:
      archipelago simulate --workload gangs --nodes ../shared/traces/alibaba-spot-gpu-v2026/node_info_df.csv
    """
    if workload_yaml == GANG_WORKLOAD or (workload_yaml and gangs.is_gang_yaml(workload_yaml)):
        if pods or bound or plot:
            raise click.UsageError("--pods, --bound and --plot are for the pod workload, not for gangs")
        config = plan_.Config(
            seed=seed,
            preemption_delay_s=preemption_delay,
            preemption_exempt_s=preemption_exempt,
            spread_delay_s=spread_delay,
            queueing=queueing,
        )
        _simulate_gangs(
            nodes, cluster_yaml, workload_yaml, policy_names, config, gang_count, load, period, as_json, jobs
        )
        return
    try:
        scn = _scenario(nodes, pods, cluster_yaml, workload_yaml)
        plan = experiment.Plan(protocol, policy_names, seeds, tune, bound)
        protocols.check(scn, plan.protocol)
    except inputs.InputError as err:
        raise click.ClickException(str(err)) from None
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    console = rich.console.Console(stderr=True)
    runs = len(plan.policies) * len(plan.seeds)
    with _LazyProgress(console if console.is_terminal else None, runs) as progress:
        results = experiment.run(scn, plan, jobs=jobs, progress=progress)
    if as_json:
        click.echo(report.dumps(results))
    else:
        report.print_table(results)
    if plot:
        try:
            report.plot(results, plot)
        except (RuntimeError, OSError) as err:
            raise click.ClickException(f"cannot write the plot: {err}") from None
        if not as_json:
            click.echo(f"plot written to {plot}")


def _scenario(
    nodes: str | None, pods: str | None, cluster_yaml: str | None, workload_yaml: str | None
) -> scenario.Scenario:
    """The scenario the options name; the built-in demo when they name none."""
    if nodes and cluster_yaml:
        raise click.UsageError("give the cluster once: --nodes (CSV) or --cluster (YAML), not both")
    if pods and workload_yaml:
        raise click.UsageError("give the workload once: --pods (CSV) or --workload (YAML), not both")
    if not any((nodes, pods, cluster_yaml, workload_yaml)):
        return demo.build()
    if not (nodes or cluster_yaml) or not (pods or workload_yaml):
        raise click.UsageError("give both a cluster (--nodes or --cluster) and a workload (--pods or --workload)")
    if nodes:
        built = cluster.build(traces.read_nodes_csv(nodes))
    else:
        built = specs.read_cluster_yaml(cluster_yaml)  # type: ignore[arg-type]
    arrivals = traces.read_pods_csv(pods) if pods else specs.read_workload_yaml(workload_yaml)  # type: ignore[arg-type]
    name = f"{pathlib.Path(pods or workload_yaml or '').stem} on {pathlib.Path(nodes or cluster_yaml or '').stem}"
    return scenario.Scenario(name, built, tuple(arrivals))


def _simulate_gangs(
    nodes: str | None,
    cluster_yaml: str | None,
    workload: str,
    names: tuple[str, ...],
    config: plan_.Config,
    count: int,
    load: float,
    period: float,
    as_json: bool,
    jobs: int | None,
) -> None:
    """The gang branch of ``simulate``: generated or YAML gangs through the gang schedulers."""
    if nodes and cluster_yaml:
        raise click.UsageError("give the cluster once: --nodes (CSV) or --cluster (YAML), not both")
    if click.get_current_context().get_parameter_source("policy_names") is click.core.ParameterSource.DEFAULT:
        names = GANG_SCHEDULERS
    try:
        if nodes:
            built, where = gangs.island_cluster(traces.read_nodes_csv(nodes)), pathlib.Path(nodes).stem
        elif cluster_yaml:
            built, where = specs.read_cluster_yaml(cluster_yaml), pathlib.Path(cluster_yaml).stem
        else:
            built, where = demo.cluster(), "demo"
        if workload == GANG_WORKLOAD:
            arrivals = gangs.generate(config.seed, gangs=count, cluster=built, load=load)
            what = f"{count} generated gangs (seed {config.seed})"
        else:
            arrivals, what = gangs.read_gangs_yaml(workload), pathlib.Path(workload).stem
        offered = gangs.offered_load(arrivals, built)
        for name in names:
            gang_replay.scheduler(name)
    except inputs.InputError as err:
        raise click.ClickException(str(err)) from None
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    results = gang_replay.compare(arrivals, built, names, config=config, jobs=jobs, period_s=period)
    if as_json:
        click.echo(
            gang_report.dumps(
                results, workload=what, cluster=where, seed=config.seed, offered_load=offered, period_s=period
            )
        )
    else:
        every = f", a cycle every {period:g} s" if period else ""
        gang_report.print_table(results, f"{what} on {where}, offering {offered:.2f}x its cards{every}")


@main.group()
def bench() -> None:
    """Measure the scheduling core on generated clusters."""


@bench.command("cycle")
@click.option("--cards", default=10_000, show_default=True, type=click.IntRange(min=8), help="Cluster size in cards.")
@click.option("--pending-pods", default=1_000, show_default=True, type=click.IntRange(min=1), help="Pending pods.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the generated cluster and batch.")
@click.option("--budget", default=1.0, show_default=True, type=click.FloatRange(min=0.05), help="Cycle budget (s).")
@click.option("--greedy-only", is_flag=True, help="Skip the CP-SAT pass (the greedy placer alone).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_cycle(cards: int, pending_pods: int, seed: int, budget: float, greedy_only: bool, as_json: bool) -> None:
    """One scheduling cycle: islands of 32 eight-card servers, 30-60% busy, gangs of 1-512 cards."""
    from archipelago.sim import benchmark

    figures = benchmark.run_cycle(cards, pending_pods, seed=seed, budget_s=budget, solver=not greedy_only)
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        click.echo(f"{key:>18}  {value}")


@main.command()
@click.option("--budget", default=1.0, show_default=True, type=click.FloatRange(min=0.05), help="Cycle budget (s).")
@click.option(
    "--resync", default=10.0, show_default=True, type=click.FloatRange(min=0.1), help="Cycle at least every N s."
)
@click.option("--metrics-port", default=9090, show_default=True, type=click.IntRange(0, 65535), help="0: no endpoint.")
@click.option(
    "--health-port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Liveness /healthz; 0: none."
)
@click.option("--peering", help="kopf peering name: replicas stand by and only the highest --priority schedules.")
@click.option("--priority", default=0, show_default=True, type=int, help="This replica's peering priority.")
@click.option("--no-preemption", is_flag=True, help="Never preempt running gangs.")
@click.option(
    "--node-lost-after",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a node may be NotReady before its gangs restart elsewhere.",
)
@_waits("Seconds")
@_queueing("Pending gangs: ")
@click.option("--verbose", is_flag=True)
def run(
    budget: float,
    resync: float,
    metrics_port: int,
    health_port: int,
    peering: str | None,
    priority: int,
    no_preemption: bool,
    node_lost_after: float,
    preemption_delay: float,
    preemption_exempt: float,
    spread_delay: float,
    queueing: plan_.Queueing,
    verbose: bool,
) -> None:
    """Run the operator against the cluster of the current kubeconfig (or in-cluster)."""
    from archipelago import config, runner

    cycle = plan_.Config(
        budget_s=budget,
        preemption=not no_preemption,
        preemption_delay_s=preemption_delay,
        preemption_exempt_s=preemption_exempt,
        spread_delay_s=spread_delay,
        queueing=queueing,
    )
    settings = config.Operator(
        cycle=cycle,
        resync_s=resync,
        metrics_port=metrics_port or None,
        health_port=health_port or None,
        node_lost_after_s=node_lost_after,
    )
    import kubernetes.config

    try:
        runner.run(settings, peering=peering, priority=priority, verbose=verbose)
    except kubernetes.config.ConfigException as e:
        raise click.ClickException(f"no cluster to run against: {e} (set KUBECONFIG or run in a pod)") from None


@main.command()
@click.argument("reference", metavar="KIND/NAME")
@click.option("-n", "--namespace", default="default", show_default=True)
def explain(reference: str, namespace: str) -> None:
    """Why a TrainingJob, InferenceService or AcceleratorPool is where it is, or why it waits."""
    import kubernetes.client
    import kubernetes.config

    from archipelago import runner

    try:
        click.echo(runner.explain(reference, namespace))
    except kubernetes.config.ConfigException as e:
        raise click.ClickException(f"no cluster to ask: {e} (set KUBECONFIG or run in a pod)") from None
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except kubernetes.client.ApiException as e:
        raise click.ClickException(f"{reference}: HTTP {e.status} {e.reason}") from None


@main.command()
@click.argument("directory", default="crds", type=click.Path(file_okay=False))
def crds(directory: str) -> None:
    """Write the CustomResourceDefinitions generated from the API models into DIRECTORY."""
    from archipelago.api import crd

    for path in crd.write(pathlib.Path(directory)):
        click.echo(path)


class _LazyProgress:
    """A progress bar on ``console`` that appears only once a run has lasted ``PROGRESS_AFTER_S``."""

    def __init__(self, console: rich.console.Console | None, total: int) -> None:
        self.console = console
        self.lock = threading.Lock()
        self.done, self.total = 0, total
        self.bar: rich.progress.Progress | None = None
        self.task: rich.progress.TaskID | None = None
        self.timer = threading.Timer(PROGRESS_AFTER_S, self._show)
        self.timer.daemon = True

    def __enter__(self) -> Callable[[int, int], None]:
        if self.console is not None:
            self.timer.start()
        return self.update

    def __exit__(self, *_: Any) -> None:
        self.timer.cancel()
        with self.lock:
            if self.bar is not None:
                self.bar.stop()

    def update(self, done: int, total: int) -> None:
        with self.lock:
            self.done, self.total = done, total
            if self.bar is not None and self.task is not None:
                self.bar.update(self.task, completed=done, total=total)

    def _show(self) -> None:
        with self.lock:
            self.bar = rich.progress.Progress(
                rich.progress.SpinnerColumn(),
                rich.progress.TextColumn("simulating runs"),
                rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(),
                rich.progress.TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.bar.add_task("runs", total=self.total, completed=self.done)
            self.bar.start()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
