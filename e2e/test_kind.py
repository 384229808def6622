"""The operator on a real Kubernetes: a kind cluster, the Helm chart, and fake GPU and NPU servers.

Needs docker with a running daemon, kind, kubectl and helm on PATH, and skips, saying what is
missing, without them. The project's default ``pytest`` run does not collect it (``testpaths``
is ``tests``); run it with::

    .venv/bin/python -m pytest e2e -v

The module fixture builds the image, creates the cluster of ``kind-config.yaml``, fakes device
discovery (``fake_device_plugin.py``), installs ``helm/archipelago`` with that image, and applies
the namespaces, PriorityClasses and pools of ``manifests/``. Each test applies its workloads and
deletes them again. The cluster is deleted at the end unless ``E2E_KEEP=1``. README.md says what
each test checks and what is faked.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml

from archipelago import api
from archipelago.api import labels
from archipelago.placement import plan
from e2e import cluster, fake_device_plugin

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "e2e" / "manifests"
WORKLOADS = MANIFESTS / "workloads"
CHART = ROOT / "helm" / "archipelago"
TOOLS = ("docker", "kind", "kubectl", "helm")
IMAGE_REPOSITORY, IMAGE_TAG = "archipelago", "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
"""Built from the repository's Dockerfile; the operator and every workload container run it."""
RELEASE, OPERATOR_NAMESPACE, NAMESPACE = "archipelago", "archipelago-system", "archipelago-e2e"
HELM_VALUES = {
    "image.repository": IMAGE_REPOSITORY,
    "image.tag": IMAGE_TAG,
    "image.pullPolicy": "Never",  # loaded by `kind load`; a pull could only fail
    "scheduler.preemptionDelaySeconds": "2",  # the default 30 s would only slow the preemption test
}
ISLAND = "archipelago.dev/island"
DEADLINE = 180.0
"""Seconds for any one wait on the cluster."""
KNOWN_WAIT_REASONS = {code.value for code in plan.ReasonCode}


@dataclasses.dataclass
class KindCluster:
    """The running cluster: API clients, and kubectl on its own kubeconfig (the user's is never touched)."""

    kubeconfig: pathlib.Path
    core: kubernetes.client.CoreV1Api
    custom: kubernetes.client.CustomObjectsApi

    def kubectl(self, *args: str, timeout: float = DEADLINE) -> str:
        return run("kubectl", "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout)

    def apply(self, path: pathlib.Path) -> None:
        self.kubectl("apply", "-f", str(path))

    def delete(self, path: pathlib.Path) -> None:
        self.kubectl("delete", "-f", str(path), "--ignore-not-found", "--wait", f"--timeout={DEADLINE:.0f}s")

    def diagnostics(self) -> str:
        """What the cluster looks like now, for a failure message."""
        out = []
        for args in (
            ("get", "nodes", "-o", "wide"),
            ("get", "acceleratorpools,trainingjobs,inferenceservices", "-A"),
            ("get", "pods", "-A", "-o", "wide"),
            ("logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator", "--tail=60"),
        ):
            try:
                out.append(f"$ kubectl {shlex.join(args)}\n{self.kubectl(*args, timeout=30)}")
            except AssertionError as error:
                out.append(str(error))
        return "\n".join(out)


def run(*args: str, timeout: float = 600) -> str:
    """Run a command from the repository root; its stdout, or an AssertionError with its output."""
    print("$", shlex.join(args), flush=True)
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"`{shlex.join(args)}` did not finish within {timeout:.0f} s") from error
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-4000:]
        raise AssertionError(f"`{shlex.join(args)}` exited with {done.returncode}:\n{output}")
    return done.stdout


def missing_prerequisites() -> str | None:
    """Why the suite cannot run on this machine, or None."""
    problems = []
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        problems.append(f"not on PATH: {', '.join(missing)}")
    if "docker" not in missing:
        try:
            info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            problems.append("`docker info` did not answer within 30 s")
        else:
            if info.returncode != 0:
                last = [line for line in (info.stderr or info.stdout).splitlines() if line.strip()][-1:]
                problems.append(f"`docker info` failed: {last[0].strip() if last else info.returncode}")
    if not problems:
        return None
    return f"the kind e2e suite needs {', '.join(TOOLS)} on PATH and a Docker daemon; " + "; ".join(problems)


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    if not (CHART / "Chart.yaml").is_file():
        pytest.fail(f"{CHART.relative_to(ROOT)} is missing: the suite installs the operator with that chart")
    config = cluster.read()
    name = cluster.name(config)
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("docker", "build", "-t", IMAGE, ".", timeout=1800)
    if name in run("kind", "get", "clusters").split():
        run("kind", "delete", "cluster", "--name", name)
    try:
        run("kind", "create", "cluster", "--config", str(cluster.CONFIG), "--kubeconfig", str(kubeconfig), "--wait=5m")
        yield install(config, kubeconfig)
    finally:
        if os.environ.get("E2E_KEEP") == "1":
            print(f"E2E_KEEP=1: cluster {name} kept; `kind export kubeconfig --name {name}` to reach it", flush=True)
        else:
            run("kind", "delete", "cluster", "--name", name)


def install(config: dict[str, Any], kubeconfig: pathlib.Path) -> KindCluster:
    """Load the image, fake the devices, install the chart and apply the pools; the cluster, ready."""
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    kind = KindCluster(kubeconfig, kubernetes.client.CoreV1Api(client), kubernetes.client.CustomObjectsApi(client))
    run("kind", "load", "docker-image", IMAGE, "--name", cluster.name(config))
    kind.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=300s", timeout=320)
    check_nodes(kind, config)
    run(sys.executable, "e2e/fake_device_plugin.py", "--kubeconfig", str(kubeconfig))
    kind.apply(MANIFESTS / "setup")
    settings = [arg for key, value in HELM_VALUES.items() for arg in ("--set", f"{key}={value}")]
    run(
        *("helm", "install", RELEASE, str(CHART), "-n", OPERATOR_NAMESPACE, "--create-namespace"),
        *("--kubeconfig", str(kubeconfig), *settings, "--wait", "--timeout=5m"),
        timeout=360,
    )
    kind.kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", OPERATOR_NAMESPACE, "--timeout=300s")
    kind.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    kind.apply(MANIFESTS / "pools")
    return kind


def check_nodes(kind: KindCluster, config: dict[str, Any]) -> None:
    """The nodes are the ones kind-config.yaml declares, with its labels and taints (kind's naming holds)."""
    live = {node.metadata.name: node for node in kind.core.list_node().items}
    for name, wanted in cluster.workers(config).items():
        assert name in live, f"kind made no node {name}: nodes are {sorted(live)}"
        assert wanted.items() <= (live[name].metadata.labels or {}).items(), f"{name}: labels {wanted} missing"
        taints = {(t.key, t.value, t.effect) for t in live[name].spec.taints or ()}
        for taint in cluster.taints(config)[name]:
            assert (taint["key"], taint["value"], taint["effect"]) in taints, f"{name}: taint {taint} missing"


# Reading the cluster.


def eventually(what: str, predicate: Callable[[], T], kind: KindCluster, *, timeout: float = DEADLINE) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail at the deadline with the cluster's state."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
        except (LookupError, TypeError, kubernetes.client.ApiException) as error:  # not there yet
            result, last = None, error
        else:
            last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})\n{kind.diagnostics()}")
        time.sleep(1.0)


def workload(kind: KindCluster, plural: str, name: str) -> dict[str, Any]:
    return kind.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, plural, name)


def running_status(kind: KindCluster, plural: str, name: str) -> dict[str, Any] | None:
    """The workload's status once its phase is Running, else None."""
    status = workload(kind, plural, name).get("status") or {}
    return status if status.get("phase") == "Running" else None


def condition(body: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def pods_of(kind: KindCluster, job: str, *, running: int | None = None) -> list[kubernetes.client.V1Pod]:
    """The job's pods that are not being deleted; with ``running``, [] until exactly that many run."""
    items = kind.core.list_namespaced_pod(NAMESPACE, label_selector=f"{labels.JOB_NAME}={job}").items
    live = sorted((p for p in items if not p.metadata.deletion_timestamp), key=lambda p: p.metadata.name)
    if running is not None and (len(live) != running or any(p.status.phase != "Running" for p in live)):
        return []
    return live


def cards_of(pod: kubernetes.client.V1Pod) -> list[int]:
    text = pod.metadata.annotations[labels.POD_CARDS]
    return [int(card) for card in text.split(",")] if text else []


def env_of(pod: kubernetes.client.V1Pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env or ()}


def node_labels(kind: KindCluster, node: str) -> dict[str, str]:
    return kind.core.read_node(node).metadata.labels or {}


def pool_members(pool: dict[str, Any]) -> dict[str, fake_device_plugin.Server]:
    """The kind workers an AcceleratorPool manifest selects, with their fake devices."""
    servers = {server.node: server for server in fake_device_plugin.read()}
    selector = pool["spec"]["nodeSelector"].items()
    return {node: servers[node] for node, found in cluster.workers(cluster.read()).items() if selector <= found.items()}


def pool_status(kind: KindCluster, name: str, *, cards: int) -> dict[str, Any] | None:
    """The pool's status once it counts ``cards`` cards, else None."""
    body = kind.custom.get_cluster_custom_object(api.GROUP, api.VERSION, "acceleratorpools", name)
    status = body.get("status") or {}
    return status if status.get("cards") == cards else None


@contextlib.contextmanager
def applied(kind: KindCluster, path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Apply one workload manifest, yield it, then delete it and wait until its pods are gone."""
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    kind.apply(path)
    try:
        yield body
    finally:
        kind.delete(path)
        name = body["metadata"]["name"]
        eventually(f"the pods of {name} are gone", lambda: not pods_of(kind, name), kind)


# The tests, in the order a reader meets the operator.


def test_the_pools_count_the_fake_cards_and_pool_nodes_stay_dedicated(kind_cluster):
    pool_nodes: set[str] = set()
    for path in sorted((MANIFESTS / "pools").glob("*.yaml")):
        pool = yaml.safe_load(path.read_text(encoding="utf-8"))
        name, members = pool["metadata"]["name"], pool_members(pool)
        models: collections.Counter[str] = collections.Counter()
        for server in members.values():
            models[server.model] += server.count

        status = eventually(
            f"pool {name} counts {models.total()} cards",
            functools.partial(pool_status, kind_cluster, name, cards=models.total()),
            kind_cluster,
        )
        assert status["nodes"] == len(members)
        assert {m["model"]: m["cards"] for m in status["models"]} == models
        pool_nodes |= set(members)

    operator = kind_cluster.core.list_namespaced_pod(OPERATOR_NAMESPACE).items
    assert operator and not {p.spec.node_name for p in operator} & pool_nodes, "the taint keeps kube-scheduler off"


def test_a_gang_with_required_topology_runs_inside_one_island(kind_cluster):
    with applied(kind_cluster, WORKLOADS / "island-job.yaml") as job:
        name = job["metadata"]["name"]
        pods = eventually(f"the 3 pods of {name} run", lambda: pods_of(kind_cluster, name, running=3), kind_cluster)

        islands = {node_labels(kind_cluster, p.spec.node_name)[ISLAND] for p in pods}
        assert islands == {"island-a"}, "the only island with 16 H800"
        workers = [p for p in pods if p.metadata.labels[labels.ROLE] == "worker"]
        assert len(workers) == 2 and len({p.spec.node_name for p in workers}) == 2, "one whole server each"
        for p in workers:
            assert sorted(cards_of(p)) == list(range(8))
            assert env_of(p)["NVIDIA_VISIBLE_DEVICES"] == p.metadata.annotations[labels.POD_CARDS]
        (launcher,) = (p for p in pods if p.metadata.labels[labels.ROLE] == "launcher")
        assert cards_of(launcher) == []
        status = eventually(
            f"{name} is Running", functools.partial(running_status, kind_cluster, "trainingjobs", name), kind_cluster
        )
        assert status["placement"]["islands"] == ["island-a"] and status["placement"]["cards"] == 16
        assert condition({"status": status}, "Scheduled")["reason"] == "Placed"


def test_a_gang_too_big_for_any_island_waits_with_its_reason(kind_cluster):
    with applied(kind_cluster, WORKLOADS / "too-big-job.yaml") as job:
        name = job["metadata"]["name"]
        scheduled = eventually(
            f"{name} says why it waits",
            lambda: condition(workload(kind_cluster, "trainingjobs", name), "Scheduled"),
            kind_cluster,
        )
        assert scheduled["status"] == "False" and scheduled["reason"] in KNOWN_WAIT_REASONS, scheduled
        assert scheduled["reason"] == "TopologyTooSmall", scheduled["message"]
        assert workload(kind_cluster, "trainingjobs", name)["status"]["phase"] == "Pending"
        events = kind_cluster.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}")
        assert any(e.type == "Warning" and e.reason == "TopologyTooSmall" for e in events.items)
        assert pods_of(kind_cluster, name) == []


def test_a_higher_priority_gang_preempts_a_preemptible_one(kind_cluster):
    with applied(kind_cluster, WORKLOADS / "preemptible-victim.yaml") as victim:
        low = victim["metadata"]["name"]
        (before,) = eventually(f"{low} runs", lambda: pods_of(kind_cluster, low, running=1), kind_cluster)
        assert sorted(cards_of(before)) == list(range(8))

        with applied(kind_cluster, WORKLOADS / "high-priority-preemptor.yaml") as preemptor:
            high = preemptor["metadata"]["name"]
            pods = eventually(f"{high} runs", lambda: pods_of(kind_cluster, high, running=2), kind_cluster)
            preempted = condition(workload(kind_cluster, "trainingjobs", low), "Preempted")
            assert preempted is not None and preempted["status"] == "True", preempted
            assert workload(kind_cluster, "trainingjobs", low)["status"]["preemptions"] >= 1
            assert pods_of(kind_cluster, low) == [], "the victim holds nothing while the preemptor runs"
            assert {p.spec.node_name for p in pods} == {before.spec.node_name}
            rings = [{card // 4 for card in cards_of(p)} for p in pods]
            assert all(len(ring) == 1 for ring in rings) and rings[0] != rings[1], "one HCCS ring per worker"
            assert all(env_of(p)["ASCEND_VISIBLE_DEVICES"] == p.metadata.annotations[labels.POD_CARDS] for p in pods)
            eventually(
                f"{high} is Running",
                functools.partial(running_status, kind_cluster, "trainingjobs", high),
                kind_cluster,
            )


def test_inference_replicas_share_one_card_by_fraction(kind_cluster):
    with applied(kind_cluster, WORKLOADS / "fractional-inference.yaml") as service:
        name = service["metadata"]["name"]
        pods = eventually(f"the 4 replicas of {name} run", lambda: pods_of(kind_cluster, name, running=4), kind_cluster)

        assert len({(p.spec.node_name, p.metadata.annotations[labels.POD_CARDS]) for p in pods}) == 1, "one card"
        assert {p.metadata.annotations[labels.POD_MILLI] for p in pods} == {"250"}
        assert {p.metadata.annotations[labels.POD_DEVICE_MEMORY] for p in pods} == {"16384"}
        assert {env_of(p)["NVIDIA_VISIBLE_DEVICES"] for p in pods} == {pods[0].metadata.annotations[labels.POD_CARDS]}
        product = node_labels(kind_cluster, pods[0].spec.node_name)["nvidia.com/gpu.product"]
        assert product == "NVIDIA-A100-SXM4-80GB"
        eventually(
            f"{name} is Running",
            functools.partial(running_status, kind_cluster, "inferenceservices", name),
            kind_cluster,
        )
