"""The test cluster as a test reads it: set-up from the repository's own files, KWOK servers, the operator process.

``install`` applies what a cluster admin applies: the committed CRDs, the chart's rendered
PriorityClass and RBAC (Helm v4's engine, helm-python-sdk), and makes the operator's kubeconfig
from a TokenRequest token of the chart's ServiceAccount. ``Cluster`` is one test's slice of the
shared control plane: its own namespace, pool label and node names, removed again at the end.
Nodes are labelled as GPU Feature Discovery and the Ascend device plugin label real servers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import helm_python as helm
import kubernetes
import yaml
from kubernetes.client import ApiException

from archipelago import api
from archipelago.api import labels, resources
from tests.controlplane import components

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "archipelago"
CRDS = ROOT / "crds"
RELEASE, OPERATOR_NAMESPACE = "archipelago", "archipelago-system"
POOL_LABEL = "archipelago.dev/pool"
ISLAND = "archipelago.dev/island"
DEADLINE_S = 60.0
"""Seconds for any one wait on the cluster."""
PLURALS = {k.kind: k.plural for k in resources.KINDS}
_serial = itertools.count()


def eventually(check: Callable[[], T], deadline_s: float = DEADLINE_S, what: str = "") -> T:
    """The first truthy value of ``check()``, polled; fails the test after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except ApiException as e:
            last = e
        if last and not isinstance(last, ApiException):
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline_s:.0f} s: {what or check}; last value {last!r}")


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def chart_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What ``helm install archipelago helm/archipelago -n archipelago-system`` would create."""
    with helm.Chart.load(CHART) as chart:
        texts = chart.render(values or {}, name=RELEASE, namespace=OPERATOR_NAMESPACE, is_install=True)
    return [doc for path, text in texts.items() if path.endswith(".yaml") for doc in documents(text)]


def create(client: kubernetes.client.ApiClient, body: dict[str, Any]) -> None:
    """Create ``body`` (any kind the Python client has a model for) as ``kubectl create`` would."""
    kubernetes.utils.create_from_dict(client, body)


@dataclasses.dataclass
class Installed:
    admin: kubernetes.client.ApiClient
    operator_kubeconfig: pathlib.Path
    service_account: str


def install(plane: components.ControlPlane) -> Installed:
    """CRDs (until Established), the chart's PriorityClass and RBAC, and the operator's token."""
    admin = kubernetes.config.new_client_from_config(str(plane.admin_kubeconfig))
    extensions = kubernetes.client.ApiextensionsV1Api(admin)
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in documents(path.read_text()):
            extensions.create_custom_resource_definition(doc)
            eventually(
                lambda name=doc["metadata"]["name"]: any(
                    c.type == "Established" and c.status == "True"
                    for c in extensions.read_custom_resource_definition(name).status.conditions or ()
                ),
                what=f"CRD {doc['metadata']['name']} Established",
            )
    core = kubernetes.client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
    account = None
    for doc in chart_objects():
        if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "PriorityClass"):
            create(admin, doc)
        if doc["kind"] == "ServiceAccount":
            account = doc["metadata"]["name"]
    assert account, "the chart renders no ServiceAccount"
    request = {"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 86400}}
    token = core.create_namespaced_service_account_token(account, OPERATOR_NAMESPACE, request).status.token
    kubeconfig = components.service_account_kubeconfig(plane, OPERATOR_NAMESPACE, account, token)
    return Installed(admin, kubeconfig, f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}")


@dataclasses.dataclass
class Operator:
    """``archipelago run`` as a process, authenticated as the chart's ServiceAccount."""

    popen: subprocess.Popen
    log: pathlib.Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, kill: bool = False) -> None:
        if self.popen.poll() is None:
            (self.popen.kill if kill else self.popen.terminate)()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


FAST_ARGS = ("--budget", "0.3", "--resync", "1", "--preemption-delay", "1", "--metrics-port", "0")
"""Short cycles, so scenarios take seconds; everything else is the product default."""


def start_operator(
    installed: Installed, work: pathlib.Path, *args: str, settle: Callable[[], None] | None = None
) -> Operator:
    """Start ``archipelago run`` with ``FAST_ARGS`` and ``args``; its log goes to ``work``."""
    log = work / f"operator-{next(_serial)}.log"
    command = [sys.executable, "-m", "archipelago", "run", *FAST_ARGS, "--health-port", "0", *args]
    popen = subprocess.Popen(  # noqa: S603 - our own CLI
        command,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=components.environment(installed.operator_kubeconfig),
        start_new_session=True,
    )
    operator = Operator(popen, log)
    eventually(
        lambda: not operator.alive() or "Activity 'start' succeeded" in operator.text(), what="the operator starting"
    )
    assert operator.alive(), f"the operator exited: {operator.text()[-2000:]}"
    return operator


@dataclasses.dataclass
class Cluster:
    """One test's namespace, pools and KWOK nodes on the shared control plane."""

    client: kubernetes.client.ApiClient
    prefix: str
    namespace: str
    pools: list[str] = dataclasses.field(default_factory=list)
    nodes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.scheduling = kubernetes.client.SchedulingV1Api(self.client)
        self.policy = kubernetes.client.PolicyV1Api(self.client)
        self.priority_classes: list[str] = []

    # Set-up

    def pool(self, name: str = "gpu", *, kind: str = "GPU", fractional: bool = False, **spec: Any) -> str:
        full = f"{self.prefix}-{name}"
        resource = "nvidia.com/gpu" if kind == "GPU" else "huawei.com/Ascend910"
        body = {
            "apiVersion": api.API_VERSION,
            "kind": "AcceleratorPool",
            "metadata": {"name": full},
            "spec": {
                "nodeSelector": {POOL_LABEL: full},
                "kind": kind,
                "resourceName": resource,
                "fractional": fractional,
                "topologyLevels": [ISLAND],
                **spec,
            },
        }
        self.custom.create_cluster_custom_object(api.GROUP, api.VERSION, "acceleratorpools", body)
        self.pools.append(full)
        return full

    def node(
        self, name: str, *, island: str, pool: str = "gpu", model: str = "H800", cards: int = 8, npu: bool = False
    ) -> str:
        """A KWOK node labelled as GFD (GPU) or the Ascend device plugin (``npu``) would label it."""
        full = f"{self.prefix}-{name}"
        if npu:
            vendor = {"accelerator": "huawei-Ascend910", "accelerator-type": "module-910b-8"}
            resource = "huawei.com/Ascend910"
        else:
            memory = {"H800": "81559", "A100-SXM4-80GB": "81920"}.get(model, "81559")
            vendor = {"nvidia.com/gpu.product": f"NVIDIA-{model}", "nvidia.com/gpu.memory": memory}
            vendor["nvidia.com/gpu.count"] = str(cards)
            resource = "nvidia.com/gpu"
        capacity = {"cpu": "128", "memory": "1Ti", "pods": "110", resource: str(cards)}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": full,
                "annotations": {components.KWOK_ANNOTATION: "fake"},
                "labels": {
                    POOL_LABEL: f"{self.prefix}-{pool}",
                    ISLAND: f"{self.prefix}-{island}",
                    "kubernetes.io/hostname": full,
                    "type": "kwok",
                    **vendor,
                },
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        self.core.create_node(body)
        self.nodes.append(full)
        return full

    def ready(self) -> None:
        """Wait until kwok reports every node of this test Ready."""
        for node in self.nodes:
            eventually(lambda n=node: self.node_ready(n), what=f"node {node} Ready")

    def node_ready(self, node: str) -> bool:
        conditions = self.core.read_node(node).status.conditions or ()
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def quota(self, pods: int, name: str = "pods") -> None:
        """A ResourceQuota of ``pods`` pods on the namespace, waited for until the quota controller
        has filled in its status (admission refuses every pod before that)."""
        body = {"metadata": {"name": name}, "spec": {"hard": {"pods": str(pods)}}}
        _create_or_patch(
            self.core.create_namespaced_resource_quota, self.core.patch_namespaced_resource_quota, self.namespace, body
        )
        eventually(
            lambda: (
                (self.core.read_namespaced_resource_quota(name, self.namespace).status.hard or {}).get("pods")
                == str(pods)
            ),
            what=f"quota {name} of {pods} pods in force",
        )

    def disruption_budget(self, job: str, min_available: int) -> None:
        """A PodDisruptionBudget (policy/v1) of ``min_available`` pods over job ``job``'s pods, created or
        changed, waited for until the disruption controller has counted them (until then it allows none)."""
        body = {
            "metadata": {"name": job},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {labels.JOB_NAME: job}}},
        }
        policy = self.policy
        _create_or_patch(
            policy.create_namespaced_pod_disruption_budget,
            policy.patch_namespaced_pod_disruption_budget,
            self.namespace,
            body,
        )
        eventually(
            lambda: (
                (b := self.policy.read_namespaced_pod_disruption_budget(job, self.namespace)).status
                and b.status.observed_generation == b.metadata.generation
                and b.status.desired_healthy == min_available
            ),
            what=f"PodDisruptionBudget {job} counted",
        )

    def priority_class(self, name: str, value: int) -> str:
        full = f"{self.prefix}-{name}"
        self.scheduling.create_priority_class({"metadata": {"name": full}, "value": value, "globalDefault": False})
        self.priority_classes.append(full)
        return full

    # Workloads

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        body.pop("status", None)
        return self.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, PLURALS[body["kind"]], body
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, PLURALS[kind], name)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, PLURALS[kind], name, body)

    def delete(self, kind: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, PLURALS[kind], name)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def condition(self, kind: str, name: str, type_: str = "Scheduled") -> dict[str, Any] | None:
        return next((c for c in self.status(kind, name).get("conditions") or () if c["type"] == type_), None)

    def pods(self, job: str | None = None, *, live: bool = True) -> list[kubernetes.client.V1Pod]:
        items = self.core.list_namespaced_pod(self.namespace).items
        mine = [p for p in items if job is None or (p.metadata.labels or {}).get(labels.JOB_NAME) == job]
        if live:
            mine = [
                p for p in mine if not p.metadata.deletion_timestamp and p.status.phase not in ("Succeeded", "Failed")
            ]
        return sorted(mine, key=lambda p: p.metadata.name)

    def running(self, job: str, count: int) -> list[kubernetes.client.V1Pod]:
        """Wait until ``job`` has exactly ``count`` live pods, all Running (kwok's pod-ready stage)."""
        return eventually(
            lambda: (pods := self.pods(job)) and len(pods) == count and all(p.status.phase == "Running" for p in pods)
            and pods,
            what=f"{count} running pods of {job}",
        )  # fmt: skip

    def record_terminating(self) -> dict[str, kubernetes.client.V1Pod]:
        """From now on, each pod of the namespace as it was when it started terminating (its grace
        period, its conditions). A watch in a daemon thread: kwok may remove a terminating pod within
        a second, too fast to poll."""
        seen: dict[str, kubernetes.client.V1Pod] = {}
        start = self.core.list_namespaced_pod(self.namespace).metadata.resource_version

        def follow() -> None:
            stream = kubernetes.watch.Watch().stream(
                self.core.list_namespaced_pod, self.namespace, resource_version=start, timeout_seconds=600
            )
            with contextlib.suppress(Exception):  # the control plane stopping at the session's end
                for event in stream:
                    pod = event["object"]
                    if pod.metadata.deletion_timestamp and pod.metadata.name not in seen:
                        seen[pod.metadata.name] = pod

        threading.Thread(target=follow, daemon=True).start()
        return seen

    def events(self, name: str) -> list[kubernetes.client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items if e.involved_object.name == name]

    def island_of(self, node: str) -> str:
        return self.core.read_node(node).metadata.labels[ISLAND].removeprefix(f"{self.prefix}-")

    # What a kubelet or a node failure would do

    def fail_pod(self, name: str, reason: str = "Error") -> None:
        """The pod's container exits non-zero: kwok is told to leave the pod alone, then its status is written."""
        self.core.patch_namespaced_pod(
            name, self.namespace, {"metadata": {"annotations": {components.CUSTOM_STATUS: "custom"}}}
        )
        status = {"status": {"phase": "Failed", "reason": reason, "message": "exit code 1"}}
        self.core.patch_namespaced_pod_status(name, self.namespace, status)

    def stop_node(self, node: str) -> None:
        """The node's kubelet stops: kwok no longer heartbeats it, and its Ready condition turns False."""
        self.core.patch_node(node, {"metadata": {"annotations": {components.KWOK_ANNOTATION: "stopped"}}})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = {"type": "Ready", "status": "False", "reason": "KubeletStopped", "message": "test",
                     "lastHeartbeatTime": now, "lastTransitionTime": now}  # fmt: skip
        conditions = [c for c in self._conditions(node) if c["type"] != "Ready"] + [condition]
        self.core.patch_node_status(node, {"status": {"conditions": conditions}})

    def restart_node(self, node: str) -> None:
        """kwok manages the node again, and its heartbeat makes it Ready."""
        self.core.patch_node(node, {"metadata": {"annotations": {components.KWOK_ANNOTATION: "fake"}}})

    def _conditions(self, node: str) -> list[dict[str, Any]]:
        found = self.core.read_node(node).status.conditions or ()
        return [self.client.sanitize_for_serialization(c) for c in found]

    # Tear-down

    def teardown(self) -> None:
        """Remove the namespace (the operator, still running, releases its finalizers), pools, nodes, classes."""
        try:
            self.core.delete_namespace(self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
        eventually(
            lambda: _gone(lambda: self.core.read_namespace(self.namespace)), what=f"namespace {self.namespace} gone"
        )
        for pool in self.pools:
            _ignore_missing(lambda p=pool: self.custom.delete_cluster_custom_object(
                api.GROUP, api.VERSION, "acceleratorpools", p))  # fmt: skip
        for node in self.nodes:
            _ignore_missing(lambda n=node: self.core.delete_node(n))
        for name in self.priority_classes:
            _ignore_missing(lambda n=name: self.scheduling.delete_priority_class(n))


def _create_or_patch(
    create: Callable[..., Any], patch: Callable[..., Any], namespace: str, body: dict[str, Any]
) -> None:
    """Create the namespaced object ``body``, or merge it into the one of that name."""
    try:
        create(namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise
        patch(body["metadata"]["name"], namespace, body)


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as e:
        return e.status == 404
    return False


def _ignore_missing(call: Callable[[], Any]) -> None:
    try:
        call()
    except ApiException as e:
        if e.status != 404:
            raise


def names(pods: Iterable[kubernetes.client.V1Pod]) -> list[str]:
    return [p.metadata.name for p in pods]
