"""Benchmark: end-to-end pods/s on a real control plane, Archipelago against the real kube-scheduler.

    .venv/bin/python bench/controlplane.py [--nodes 1000,5000] [--pods 10000] [--seed 0]
                                           [--baseline-qps default] [--out bench/results/controlplane.md]
    .venv/bin/python bench/controlplane.py --nodes 100 --pods 500        # smoke run, about a minute

For each node count a fresh control plane is started from ``tests/controlplane`` (etcd,
kube-apiserver, kube-controller-manager, kwok on loopback; ``build.sh`` first if a binary is
missing) and set up as the tests set it up (``kube.install``: CRDs, PriorityClasses, the chart's
RBAC, the operator's ServiceAccount kubeconfig). On it:

* N KWOK nodes of 8 ``nvidia.com/gpu`` cards, labelled as ``kube.Cluster.node`` labels them (GPU
  Feature Discovery labels, ``archipelago.dev/island`` islands of 32 nodes), created in parallel,
  and one AcceleratorPool over them.
* The workload, seeded: gangs drawn from ``GANGS`` until ``--pods`` pods. One pod of 1, 2, 4 or 8
  cards, or 2, 4 or 8 pods of 8 cards (16, 32, 64 cards) that require one island.
* Archipelago: the real ``archipelago run`` (``kube.start_operator``, the product's defaults for
  budget, resync and preemption delay, a metrics port), one TrainingJob per gang created in
  parallel; timed from the first create until every pod that will be placed is Running.
* Baseline, on the same nodes once every pod of the first run is gone (the operator stopped):
  the real kube-scheduler (``ControlPlane.start_scheduler``, its defaults, so client QPS 50) with
  the same pods as plain pods requesting ``nvidia.com/gpu`` (requests = limits), without any
  gang or coscheduling plugin: kube-scheduler places them one by one, a gang's pods wherever each
  fits. ``--baseline-qps 500`` adds a run with ``--kube-api-qps 500 --kube-api-burst 1000``.

When the cards do not hold every gang (1,000 nodes: 8,000 cards for about 31,000), each run goes
on until the cluster is full: no pod became Running for ``--quiet`` seconds, and every bound pod
is Running. The end time is the last pod's Running event, so the quiet wait is not counted; the
figures are then pods and cards placed per second, and the two schedulers may place different pods.

Pods are followed with one raw watch per namespace (urllib3 and ``json``, no client models):
bound is the first event with ``spec.nodeName``, Running the first event in phase Running (kwok's
pod-ready stage). The operator's peak memory is ``VmHWM`` of its process (plus its children's),
also sampled as ``VmRSS`` every half second. Where the time goes: the operator's Prometheus
metrics (``archipelago_cycle_duration_seconds``), the API server's request counts and latencies
by verb and resource over each run (``apiserver_request_total``), CPU seconds of every process,
the operator's log, and per-gang latencies from this script's own clock.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]  # `python bench/controlplane.py` puts only bench/ on the path

import urllib3  # noqa: E402

from archipelago import api  # noqa: E402
from archipelago.api import labels  # noqa: E402
from tests.controlplane import components, kube  # noqa: E402
from tests.workload_builders import make_job, make_template  # noqa: E402

NODE_CARDS = 8
PER_ISLAND = 32
GANGS = ((1, 1, 0.58), (1, 2, 0.20), (1, 4, 0.10), (1, 8, 0.06), (2, 8, 0.03), (4, 8, 0.018), (8, 8, 0.012))
"""(pods, cards per pod, share of gangs). Mean 1.17 pods and 3.7 cards a gang, 3.15 cards a pod:
10,000 pods ask for about 31,500 cards, 79% of 5,000 nodes. 19% of the pods are in multi-pod gangs."""
ISLAND_REQUIRED = {"level": kube.ISLAND, "mode": "Required"}
PREFIX = "bench"
NS_OPERATOR, NS_PLAIN, NS_PROBE = "bench", "bench-plain", "bench-probe"
POOL_LABEL_VALUE = f"{PREFIX}-gpu"


class BenchError(RuntimeError):
    """A step failed or missed its deadline; the message says which and where to look."""


# -- The workload -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gang:
    name: str
    pods: int
    cards: int  # per pod

    @property
    def total(self) -> int:
        return self.pods * self.cards

    def pod_names(self) -> list[str]:
        return [f"{self.name}-worker-{i}" for i in range(self.pods)]


def workload(pods: int, seed: int) -> list[Gang]:
    """Gangs drawn from ``GANGS`` until exactly ``pods`` pods (a gang that would overshoot is redrawn as one pod)."""
    rng = random.Random(seed)
    gangs: list[Gang] = []
    left = pods
    while left:
        count, cards, _ = rng.choices(GANGS, [w for *_, w in GANGS])[0]
        if count > left:
            count, cards, _ = rng.choices(GANGS[:4], [w for *_, w in GANGS[:4]])[0]
        gangs.append(Gang(f"g{len(gangs):05d}", count, cards))
        left -= count
    return gangs


def job_body(g: Gang) -> dict[str, Any]:
    body = make_job(g.name, workers=g.pods, cards=g.cards, topology=ISLAND_REQUIRED if g.pods > 1 else None,
                    namespace=NS_OPERATOR)  # fmt: skip
    body.pop("status", None)
    body["metadata"] = {"name": g.name, "namespace": NS_OPERATOR}
    return body


def plain_pod(g: Gang, name: str) -> dict[str, Any]:
    """The pod the TrainingJob's template makes, as a plain pod: the cards as an extended resource."""
    template = make_template()
    spec = template["spec"]
    container = spec["containers"][0]
    gpus = {"nvidia.com/gpu": str(g.cards)}
    container["resources"] = {"requests": {**container["resources"]["requests"], **gpus}, "limits": gpus}
    spec["nodeSelector"] = {kube.POOL_LABEL: POOL_LABEL_VALUE}
    spec["terminationGracePeriodSeconds"] = 30  # the TrainingJob's checkpoint grace in make_job
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS_PLAIN,
            "labels": {**template["metadata"]["labels"], labels.JOB_NAME: g.name},
        },
        "spec": spec,
    }


# -- HTTP: raw JSON on urllib3, so the client's models cost nothing ---------------------------------


class Http:
    def __init__(self, plane: components.ControlPlane, parallel: int) -> None:
        self.base = plane.server
        self.pool = urllib3.PoolManager(
            num_pools=4, maxsize=parallel + 8, ca_certs=str(plane.pki / "ca.crt"), cert_reqs="CERT_REQUIRED"
        )
        self.headers = {"Authorization": f"Bearer {components.ADMIN_TOKEN}", "Content-Type": "application/json"}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 60.0,
        attempts: int = 6,
        created: bool = False,
    ) -> Any:
        """The decoded answer; retries 429, 5xx and connection errors; a 409 on a create counts as made."""
        data = None if body is None else json.dumps(body).encode()
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(5.0, 0.2 * 2**attempt))
            try:
                r = self.pool.request(method, self.base + path, body=data, headers=self.headers, retries=False,
                                      timeout=urllib3.Timeout(connect=5, read=timeout))  # fmt: skip
            except urllib3.exceptions.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status < 300:
                return json.loads(r.data) if r.data else None
            if created and r.status == 409:
                return None
            last = f"HTTP {r.status}: {r.data[:300].decode(errors='replace')}"
            if r.status not in (429, 500, 502, 503, 504):
                break
        raise BenchError(f"{method} {path}: {last}")

    def text(self, path: str, timeout: float = 60.0) -> str:
        r = self.pool.request("GET", self.base + path, headers=self.headers, retries=False,
                              timeout=urllib3.Timeout(connect=5, read=timeout))  # fmt: skip
        if r.status != 200:
            raise BenchError(f"GET {path}: HTTP {r.status}")
        return r.data.decode()


def create_all(http: Http, items: Sequence[tuple[str, dict]], parallel: int) -> list[float]:
    """POST every (path, body) with ``parallel`` requests in flight; each one's completion time (monotonic)."""
    done = [0.0] * len(items)

    def one(i: int) -> None:
        path, body = items[i]
        http.call("POST", path, body, created=True)
        done[i] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for future in concurrent.futures.as_completed([pool.submit(one, i) for i in range(len(items))]):
            future.result()
    return done


# -- Following pods -----------------------------------------------------------------------------------


@dataclasses.dataclass
class PodRecord:
    job: str = ""
    node: str = ""
    cards: str | None = None
    gpus: int = 0
    bound_t: float | None = None
    running_t: float | None = None
    deleted: bool = False


class PodWatch(threading.Thread):
    """Every pod of a namespace: when it was first seen bound and first seen Running (this process's clock)."""

    def __init__(self, http: Http, namespace: str) -> None:
        super().__init__(daemon=True, name=f"watch-{namespace}")
        self.http, self.namespace = http, namespace
        self.pods: dict[str, PodRecord] = {}
        self.bound = self.running = 0
        self.last_progress = time.monotonic()
        self.error: str | None = None
        self.events = 0
        self._stop = threading.Event()
        self._listed = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def started_watching(self, deadline_s: float = 60.0) -> None:
        if not self._listed.wait(deadline_s):
            raise BenchError(f"the pod watch of {self.namespace} did not start in {deadline_s:.0f} s: {self.error}")

    def _see(self, kind: str, pod: dict[str, Any], now: float) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        record = self.pods.get(meta["name"])
        if record is None:
            container = (spec.get("containers") or [{}])[0]
            gpus = int(((container.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu", 0))
            record = self.pods[meta["name"]] = PodRecord(
                job=(meta.get("labels") or {}).get(labels.JOB_NAME, ""),
                cards=(meta.get("annotations") or {}).get(labels.POD_CARDS),
                gpus=gpus,
            )
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            record.deleted = True
        if spec.get("nodeName") and record.bound_t is None:
            record.node, record.bound_t = spec["nodeName"], now
            self.bound += 1
            self.last_progress = now
        if status.get("phase") == "Running" and record.running_t is None:
            record.running_t = now
            self.running += 1
            self.last_progress = now

    def run(self) -> None:
        try:
            self._follow()
        except Exception as e:  # noqa: BLE001 - reported by the waits
            self.error = f"{type(e).__name__}: {e}"

    def _follow(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}/pods"
        version = None
        while not self._stop.is_set():
            if version is None:
                listed = self.http.call("GET", base)
                now = time.monotonic()
                for pod in listed["items"]:
                    self._see("ADDED", pod, now)
                version = listed["metadata"]["resourceVersion"]
                self._listed.set()
            query = urllib.parse.urlencode(
                {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": "60"}
            )
            r = self.http.pool.request("GET", f"{self.http.base}{base}?{query}", headers=self.http.headers,
                                       preload_content=False, retries=False,
                                       timeout=urllib3.Timeout(connect=5, read=90))  # fmt: skip
            buffer = b""
            try:
                for chunk in r.stream(1 << 16):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            version = None if obj.get("code") == 410 else version
                            break
                        version = obj["metadata"].get("resourceVersion") or version
                        if event["type"] != "BOOKMARK":
                            self.events += 1
                            self._see(event["type"], obj, time.monotonic())
                    if self._stop.is_set():
                        break
            finally:
                r.release_conn()


# -- Processes: memory, CPU ---------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found + [g for c in found for g in _children(c)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its waited-for children."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / TICK
    return 0.0


class RssSampler(threading.Thread):
    """The largest VmRSS of ``pid`` and its children summed, sampled every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True, name="rss")
        self.pid, self.period, self.peak_kib = pid, period, 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.period):
            total = sum(_status_kib(p, "VmRSS") for p in (self.pid, *_children(self.pid)))
            self.peak_kib = max(self.peak_kib, total)

    def stop(self) -> int:
        """Stop; the peak VmHWM (kernel's high-water mark) of the process and its children, KiB."""
        self._stop.set()
        return sum(_status_kib(p, "VmHWM") for p in (self.pid, *_children(self.pid)))


def cpu_snapshot(plane: components.ControlPlane, extra: dict[str, int]) -> dict[str, float]:
    found = {p.name: cpu_s(p.popen.pid) for p in plane.processes}
    found |= {name: cpu_s(pid) for name, pid in extra.items()}
    found["bench (this script)"] = sum(os.times()[:2])
    return found


# -- Metrics ------------------------------------------------------------------------------------------

_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, prefixes: Iterable[str]) -> list[tuple[str, dict[str, str], float]]:
    wanted = tuple(prefixes)
    found = []
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        with contextlib.suppress(ValueError):
            found.append((name, dict(_LABELS.findall(rest)), float(value)))
    return found


def apiserver_requests(http: Http) -> dict[tuple[str, str], list[float]]:
    """(verb, resource[/subresource]) to [count, summed seconds] since the API server started."""
    text = http.text("/metrics")
    found: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for name, lab, value in parse_metrics(text, ("apiserver_request_total", "apiserver_request_duration_seconds_")):
        resource = lab.get("resource", "") + (f"/{lab['subresource']}" if lab.get("subresource") else "")
        key = (lab.get("verb", ""), resource)
        if name == "apiserver_request_total":
            found[key][0] += value
        elif name == "apiserver_request_duration_seconds_sum":
            found[key][1] += value
    return dict(found)


def diff_requests(before: dict, after: dict) -> list[tuple[str, str, int, float]]:
    """(verb, resource, requests, mean ms) of the requests between the two scrapes, most first; WATCH left out."""
    rows = []
    for key, (count, seconds) in after.items():
        c0, s0 = before.get(key, (0.0, 0.0))
        n = int(count - c0)
        if n > 0 and key[0] not in ("WATCH", "CONNECT"):
            rows.append((*key, n, 1000 * (seconds - s0) / n))
    return sorted(rows, key=lambda r: -r[2])


def operator_metrics(port: int) -> dict[str, Any]:
    with urllib3.PoolManager() as pool:
        text = pool.request("GET", f"http://127.0.0.1:{port}/metrics", timeout=10).data.decode()
    found: dict[str, Any] = {"buckets": {}, "pending": {}}
    for name, lab, value in parse_metrics(text, ("archipelago_",)):
        if name == "archipelago_cycle_duration_seconds_bucket":
            found["buckets"][lab["le"]] = value
        elif name == "archipelago_pending_gangs":
            found["pending"][lab["reason"]] = value
        elif not lab:
            found[name] = value
    return found


PROFILE_PARTS = (
    ("archipelago/cycle.py", "cycle.run: queue, greedy placement, solver (worker thread)"),
    ("archipelago/inventory", "cluster and ledger rebuilt from Nodes and pod annotations"),
    ("archipelago/scheduler.py", "scheduler loop: settle each workload, drafts, apply"),
    ("kubernetes/client", "kubernetes client calls: the operator's API writes (worker threads)"),
    ("urllib3", "kubernetes client calls: the operator's API writes (worker threads)"),
    ("archipelago/handlers.py", "kopf handlers and indexes of ours (wake, pod_seen, _plain copies)"),
    ("kopf", "kopf: watch streams, indexes, per-object handler workers, logging"),
)


ENTRY_POINTS = re.compile(r"archipelago/(cli|__main__|runner)\.py|^schedule ")
"""Frames every main-thread sample has: left out of the top functions."""


def profile_summary(path: pathlib.Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks of the operator, non-idle samples only, sorted into parts by the
    first marker found in the stack (order of ``PROFILE_PARTS``); and the top functions, inclusive."""
    parts: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            part = next((name for marker, name in PROFILE_PARTS if marker in stack), "other (asyncio, json, threads)")
            parts[part] += n
            for frame in set(stack.split(";")):
                if "archipelago/" in frame and not ENTRY_POINTS.search(frame):
                    functions[re.sub(r" \((?:.*/)?(archipelago/[\w/]+\.py):\d+\)", r" \1", frame)] += n
    return {"samples": total, "parts": dict(parts.most_common()), "top": functions.most_common(15)}


def log_summary(text: str) -> dict[str, Any]:
    """Lines by level and logger, and the first distinct warnings and errors."""
    levels: collections.Counter[str] = collections.Counter()
    notable: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):([\w.]+):(.*)", line)
        if not m:
            continue
        levels[f"{m[1]} {m[2]}"] += 1
        if m[1] in ("WARNING", "ERROR", "CRITICAL"):
            gist = re.sub(r"\d+", "N", m[3])[:160]
            if gist not in {n.split(": ", 1)[1] for n in notable} and len(notable) < 8:
                notable.append(f"{m[1]} {m[2]}: {gist}")
    return {"lines": sum(levels.values()), "levels": dict(levels.most_common(12)), "notable": notable,
            "tracebacks": text.count("Traceback")}  # fmt: skip


# -- Waits --------------------------------------------------------------------------------------------


def wait(check: Callable[[], Any], deadline_s: float, what: str, alive: Callable[[], None], period: float = 1.0) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while True:
        alive()
        try:
            last = check()
        except BenchError as e:
            last = e
        if last and not isinstance(last, BenchError):
            return last
        if time.monotonic() > end:
            raise BenchError(f"not within {deadline_s:.0f} s: {what}; last: {last!r}")
        time.sleep(period)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- One node count -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    plane: components.ControlPlane
    http: Http
    installed: kube.Installed
    args: argparse.Namespace
    nodes: int
    gangs: list[Gang]
    islands: dict[str, str] = dataclasses.field(default_factory=dict)
    operator: kube.Operator | None = None
    scheduler: components.Process | None = None

    def alive(self) -> None:
        self.plane.check()
        if self.operator is not None and not self.operator.alive():
            raise BenchError(f"the operator exited; see {self.operator.log}")
        if self.scheduler is not None:
            self.scheduler.check()

    # Set-up

    def namespace(self, name: str) -> None:
        self.http.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}}, created=True)
        wait(lambda: self.http.call("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", attempts=1),
             60, f"the default ServiceAccount of {name}", self.alive)  # fmt: skip

    def make_nodes(self) -> dict[str, float]:
        """The KWOK nodes as ``kube.Cluster.node`` labels them, posted in parallel; the pool; all Ready, untainted."""

        class Recorder:
            def __init__(self) -> None:
                self.bodies: list[dict] = []

            def create_node(self, body: dict) -> None:
                self.bodies.append(body)

        cluster = kube.Cluster(self.installed.admin, PREFIX, NS_OPERATOR)
        recorder = cluster.core = Recorder()
        for i in range(self.nodes):
            cluster.node(f"n{i:05d}", island=f"i{i // PER_ISLAND:03d}", pool="gpu", cards=NODE_CARDS)
        self.islands = {b["metadata"]["name"]: b["metadata"]["labels"][kube.ISLAND] for b in recorder.bodies}
        started = time.monotonic()
        create_all(self.http, [("/api/v1/nodes", b) for b in recorder.bodies], self.args.parallel)
        created = time.monotonic() - started
        cluster.pool("gpu")  # AcceleratorPool bench-gpu over them, topology level the island
        selector = urllib.parse.quote(f"{kube.POOL_LABEL}={POOL_LABEL_VALUE}")

        def ready() -> bool | BenchError:
            items = self.http.call("GET", f"/api/v1/nodes?labelSelector={selector}", timeout=120)["items"]
            good = sum(
                1
                for n in items
                if not (n.get("spec") or {}).get("taints")
                and any(c["type"] == "Ready" and c["status"] == "True" for c in _conditions(n))
            )
            return good == self.nodes or BenchError(f"{good} of {self.nodes} nodes Ready and untainted")

        wait(ready, self.args.setup_deadline, f"{self.nodes} KWOK nodes Ready", self.alive, period=3.0)
        return {"create_s": created, "ready_s": time.monotonic() - started}

    # The two runs

    def archipelago(self, work: pathlib.Path) -> dict[str, Any]:
        defaults = {p.name: p.default for p in _run_command().params}
        port = components.free_port()
        args = ("--budget", str(defaults["budget"]), "--resync", str(defaults["resync"]),
                "--preemption-delay", str(defaults["preemption_delay"]), "--metrics-port", str(port))  # fmt: skip
        started = time.monotonic()
        self.operator = kube.start_operator(self.installed, work, *args)
        pid = self.operator.popen.pid
        sampler = RssSampler(pid)
        sampler.start()

        def pool_ready() -> bool | BenchError:
            status = (
                self.http.call("GET", f"/apis/{api.GROUP}/{api.VERSION}/acceleratorpools/{POOL_LABEL_VALUE}").get(
                    "status"
                )
                or {}
            )
            return status.get("nodes") == self.nodes or BenchError(f"pool status {status.get('nodes')} nodes")

        wait(pool_ready, self.args.setup_deadline, "the operator's first cycle over every node", self.alive)
        idle_kib = _status_kib(pid, "VmRSS")
        say(f"operator ready in {time.monotonic() - started:.1f} s, {idle_kib / 1024:.0f} MiB; creating TrainingJobs")
        path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{NS_OPERATOR}/trainingjobs"
        items = [(path, job_body(g)) for g in self.gangs]
        profiler = None
        if self.args.py_spy:
            profile = work / "operator.py-spy.txt"
            profiler = subprocess.Popen(  # noqa: S603 - py-spy samples the operator while the run lasts
                [self.args.py_spy, "record", "--pid", str(pid), "--rate", "20", "--nonblocking", "--format", "raw",
                 "--output", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        result = self._timed(NS_OPERATOR, items, {"archipelago run": pid})
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
            if profiler.poll() is None:
                profiler.kill()
            result["profile"] = profile_summary(profile)
        result["peak_rss_mib"] = sampler.stop() / 1024
        result["sampled_rss_mib"] = sampler.peak_kib / 1024
        result["idle_rss_mib"] = idle_kib / 1024
        result["metrics"] = operator_metrics(port)
        result["operator_args"] = " ".join(args)
        self.operator.stop()
        result["log"] = log_summary(self.operator.text())
        result["log_path"] = str(self.operator.log)
        self.operator = None
        self._clear(NS_OPERATOR)
        return result

    def baseline(self, qps: str) -> dict[str, Any]:
        if qps == "default":
            self.scheduler = self.plane.start_scheduler()
        else:  # ControlPlane.start_scheduler's arguments, with the client's rate limit raised
            work = self.plane.work
            self.scheduler = self.plane._spawn(
                "kube-scheduler",
                [f"--kubeconfig={self.plane.admin_kubeconfig}",
                 f"--authentication-kubeconfig={self.plane.admin_kubeconfig}",
                 f"--authorization-kubeconfig={self.plane.admin_kubeconfig}",
                 "--leader-elect=false", f"--secure-port={components.free_port()}", "--bind-address=127.0.0.1",
                 f"--cert-dir={work / 'scheduler-certs'}", f"--kube-api-qps={qps}", f"--kube-api-burst={2 * int(qps)}"],
            )  # fmt: skip
        pid = self.scheduler.popen.pid
        probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": NS_PROBE},
                 "spec": {"containers": [{"name": "main", "image": "pause"}],
                          "nodeSelector": {kube.POOL_LABEL: POOL_LABEL_VALUE}}}  # fmt: skip
        self.http.call("POST", f"/api/v1/namespaces/{NS_PROBE}/pods", probe, created=True)
        probed = f"/api/v1/namespaces/{NS_PROBE}/pods/probe"
        wait(lambda: (self.http.call("GET", probed).get("spec") or {}).get("nodeName"),
             self.args.setup_deadline, "kube-scheduler binding a probe pod", self.alive)  # fmt: skip
        self._clear(NS_PROBE)
        say(f"kube-scheduler (client QPS {qps}) ready; creating plain pods")
        path = f"/api/v1/namespaces/{NS_PLAIN}/pods"
        items = [(path, plain_pod(g, name)) for g in self.gangs for name in g.pod_names()]
        rss = RssSampler(pid)
        rss.start()
        result = self._timed(NS_PLAIN, items, {"kube-scheduler": pid})
        result["peak_rss_mib"] = rss.stop() / 1024
        result["qps"] = qps
        self.scheduler.stop()
        self.plane.processes.remove(self.scheduler)
        self.scheduler = None
        self._clear(NS_PLAIN)
        return result

    def _timed(self, namespace: str, items: list[tuple[str, dict]], extra: dict[str, int]) -> dict[str, Any]:
        """Create ``items`` from the first create on; wait until every pod that will be placed runs."""
        watch = PodWatch(self.http, namespace)
        watch.start()
        watch.started_watching()
        requests_before = apiserver_requests(self.http)
        cpu_before = cpu_snapshot(self.plane, extra)
        total = sum(g.pods for g in self.gangs)
        t0 = time.monotonic()
        creator: dict[str, Any] = {}

        def create() -> None:
            try:
                creator["done"] = create_all(self.http, items, self.args.parallel)
            except Exception as e:  # noqa: BLE001 - reported by the wait below
                creator["error"] = f"{type(e).__name__}: {e}"
            creator["end"] = time.monotonic()

        thread = threading.Thread(target=create, daemon=True)
        thread.start()
        end = t0 + self.args.run_deadline
        reported = t0
        how = ""
        while True:
            self.alive()
            now = time.monotonic()
            if "error" in creator:
                raise BenchError(f"creating objects in {namespace}: {creator['error']}")
            if watch.error and not watch.is_alive():
                raise BenchError(f"the pod watch of {namespace} failed: {watch.error}")
            if watch.running >= total:
                how = "every pod Running"
                break
            if (
                "end" in creator
                and watch.running
                and now - watch.last_progress > self.args.quiet
                and not any(
                    r.bound_t is not None and r.running_t is None and not r.deleted for r in list(watch.pods.values())
                )
            ):
                how = f"cluster full: no pod became Running for {self.args.quiet:.0f} s"
                break
            if now > end:
                raise BenchError(
                    f"{namespace}: {watch.running} of {total} pods Running ({watch.bound} bound) after "
                    f"{self.args.run_deadline:.0f} s"
                )
            if now - reported > 15:
                say(f"  {namespace}: {now - t0:5.0f} s, created {'all' if 'end' in creator else '...'}, "
                    f"{watch.bound} bound, {watch.running} Running")  # fmt: skip
                reported = now
            time.sleep(0.25)
        thread.join(30)
        cpu_after = cpu_snapshot(self.plane, extra)
        requests_after = apiserver_requests(self.http)
        watch.stop()
        pods = {n: r for n, r in watch.pods.items() if r.running_t is not None and not r.deleted}
        last = max(r.running_t for r in pods.values())
        elapsed = last - t0
        by_time = sorted(r.running_t - t0 for r in pods.values())
        first_bound = min(r.bound_t for r in pods.values() if r.bound_t is not None) - t0
        cards = sum(self._cards(n, r) for n, r in pods.items())
        lag = sorted(r.running_t - r.bound_t for r in pods.values() if r.bound_t is not None)
        one_per_gang = len(creator["done"]) == len(self.gangs)
        job_done = dict(zip((g.name for g in self.gangs), creator["done"], strict=True)) if one_per_gang else {}
        to_bound = sorted(
            r.bound_t - job_done[r.job] for r in pods.values() if r.job in job_done and r.bound_t is not None
        )
        return {
            "how": how,
            "elapsed_s": elapsed,
            "create_s": creator["end"] - t0,
            "first_bound_s": first_bound,
            "pods": len(pods),
            "cards": cards,
            "pods_per_s": len(pods) / elapsed,
            "cards_per_s": cards / elapsed,
            "objects": len(items),
            "quantiles": {q: by_time[min(len(by_time) - 1, int(q * len(by_time)))] for q in (0.1, 0.5, 0.9)},
            "bound_to_running_ms": _quant(lag, 1000),
            "job_to_bound_s": _quant(to_bound, 1),
            "gangs": self._gangs(pods),
            "cpu_s": {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
            "requests": diff_requests(requests_before, requests_after),
            "watch_events": watch.events,
        }

    def _cards(self, name: str, r: PodRecord) -> int:
        if r.gpus:
            return r.gpus
        return len(r.cards.split(",")) if r.cards else 0

    def _gangs(self, pods: dict[str, PodRecord]) -> dict[str, Any]:
        """Whole gangs, split gangs, multi-pod gangs inside one island; cards double-booked on a node."""
        of: dict[str, list[PodRecord]] = collections.defaultdict(list)
        for r in pods.values():
            of[r.job].append(r)
        whole = partial = multi = multi_whole = one_island = 0
        for g in self.gangs:
            got = of.get(g.name, [])
            if g.pods > 1:
                multi += 1
            if not got:
                continue
            if len(got) < g.pods:
                partial += 1
                continue
            whole += 1
            if g.pods > 1:
                multi_whole += 1
                one_island += len({self.islands.get(r.node) for r in got}) == 1
        used: collections.Counter[str] = collections.Counter()
        seen: set[tuple[str, str]] = set()
        double = 0
        for r in pods.values():
            used[r.node] += r.gpus or (len(r.cards.split(",")) if r.cards else 0)
            for card in r.cards.split(",") if r.cards else ():
                double += (r.node, card) in seen
                seen.add((r.node, card))
        return {"whole": whole, "partial": partial, "multi": multi, "multi_whole": multi_whole,
                "one_island": one_island, "double_booked": double,
                "overfull_nodes": sum(v > NODE_CARDS for v in used.values())}  # fmt: skip

    def _clear(self, namespace: str) -> None:
        """Delete every pod of ``namespace`` at once (grace 0) and wait until none is left."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
        self.http.call("DELETE", f"/api/v1/namespaces/{namespace}/pods", options, timeout=300)
        left = f"/api/v1/namespaces/{namespace}/pods?limit=1"
        wait(lambda: not self.http.call("GET", left)["items"] or BenchError("pods left"),
             self.args.setup_deadline, f"every pod of {namespace} gone", self.alive)  # fmt: skip


def _conditions(node: dict[str, Any]) -> list[dict[str, Any]]:
    return (node.get("status") or {}).get("conditions") or []


def _run_command():
    from archipelago.cli import run

    return run


def _quant(values: Sequence[float], scale: float) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": scale * values[len(values) // 2],
        "p90": scale * values[min(len(values) - 1, int(0.9 * len(values)))],
        "max": scale * values[-1],
        "mean": scale * statistics.fmean(values),
    }


def measure(nodes: int, args: argparse.Namespace, root: pathlib.Path) -> dict[str, Any]:
    gangs = workload(args.pods, args.seed)
    work = root / f"nodes-{nodes}"
    work.mkdir(parents=True)
    plane = components.ControlPlane(work)
    bench = None
    try:
        started = time.monotonic()
        plane.start()
        installed = kube.install(plane)
        http = Http(plane, args.parallel)
        bench = Bench(plane, http, installed, args, nodes, gangs)
        for ns in (NS_OPERATOR, NS_PLAIN, NS_PROBE):
            bench.namespace(ns)
        say(f"{nodes} nodes: control plane up in {time.monotonic() - started:.1f} s; creating nodes")
        setup = bench.make_nodes()
        say(f"  {nodes} nodes created in {setup['create_s']:.1f} s, Ready in {setup['ready_s']:.1f} s")
        ours = bench.archipelago(work)
        say(f"  archipelago: {ours['pods']} pods in {ours['elapsed_s']:.1f} s = {ours['pods_per_s']:.1f} pods/s")
        baselines = []
        for qps in args.baseline_qps.split(","):
            b = bench.baseline(qps.strip())
            say(
                f"  kube-scheduler (qps {qps}): {b['pods']} pods in {b['elapsed_s']:.1f} s = "
                f"{b['pods_per_s']:.1f} pods/s"
            )
            baselines.append(b)
        return {"nodes": nodes, "setup": setup, "archipelago": ours, "baselines": baselines, "gangs": _mix(gangs),
                "wall_s": time.monotonic() - started, "work": str(work)}  # fmt: skip
    finally:
        if bench is not None and bench.operator is not None:
            bench.operator.stop()
        plane.stop()
        if not args.keep:
            shutil.rmtree(work / "etcd", ignore_errors=True)


def _mix(gangs: Sequence[Gang]) -> dict[str, Any]:
    shapes = collections.Counter((g.pods, g.cards) for g in gangs)
    return {
        "gangs": len(gangs),
        "pods": sum(g.pods for g in gangs),
        "cards": sum(g.total for g in gangs),
        "shapes": {f"{p}x{c}": n for (p, c), n in sorted(shapes.items())},
    }


# -- Report -------------------------------------------------------------------------------------------


def report(runs: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    mix = runs[0]["gangs"]
    shapes = ", ".join(f"{k} {v}" for k, v in mix["shapes"].items())
    lines = [
        f"## Run of {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"kube-apiserver/kube-scheduler v1.36.3, kwok v0.8.0; load average at the end "
        f"{os.getloadavg()[0]:.1f}.  ",
        f"Workload (seed {args.seed}): {mix['gangs']} gangs, {mix['pods']} pods, {mix['cards']} cards; "
        f"pods x cards per pod: {shapes}. Multi-pod gangs require one island (32 nodes).",
        "",
        "| nodes | cards | scheduler | end | pods placed | cards placed | end-to-end s | pods/s | cards/s "
        "| ratio pods/s (ours / kube-scheduler) | peak RSS MiB | whole gangs | split gangs "
        "| multi-pod gangs whole, in one island |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ours = run["archipelago"]
        for name, r in [("archipelago", ours)] + [(f"kube-scheduler (QPS {b['qps']})", b) for b in run["baselines"]]:
            g = r["gangs"]
            ratio = ours["pods_per_s"] / r["pods_per_s"]
            lines.append(
                f"| {run['nodes']:,} | {run['nodes'] * NODE_CARDS:,} | {name} | {r['how']} | {r['pods']:,} "
                f"| {r['cards']:,} | {r['elapsed_s']:.1f} | {r['pods_per_s']:.1f} | {r['cards_per_s']:.1f} "
                f"| {'' if r is ours else f'{ratio:.2f}x'} | {r['peak_rss_mib']:.0f} | {g['whole']:,} "
                f"| {g['partial']:,} | {g['multi_whole']} of {g['multi']}, {g['one_island']} |"
            )
    for run in runs:
        lines += ["", *details(run)]
    return "\n".join(lines) + "\n"


def details(run: dict[str, Any]) -> list[str]:
    ours = run["archipelago"]
    m = ours["metrics"]
    cycles = m.get("archipelago_cycle_duration_seconds_count", 0)
    cycle_sum = m.get("archipelago_cycle_duration_seconds_sum", 0)
    buckets = ", ".join(f"<= {le}: {int(n)}" for le, n in m["buckets"].items())
    s = run["setup"]
    out = [
        f"### {run['nodes']:,} nodes",
        "",
        f"Set-up: nodes posted in {s['create_s']:.1f} s, all Ready and untainted {s['ready_s']:.1f} s after the "
        f"first; whole run {run['wall_s']:.0f} s. Work dir `{run['work']}`.",
        "",
        f"Archipelago (`archipelago run {ours['operator_args']} --health-port 0`): TrainingJobs created in "
        f"{ours['create_s']:.1f} s; first pod bound at {ours['first_bound_s']:.1f} s; 10/50/90% of the placed "
        f"pods Running at {_q(ours)} s; last at {ours['elapsed_s']:.1f} s. "
        f"Job created -> its pods bound: {_ms(ours['job_to_bound_s'], 's')}. Bound -> Running (kwok): "
        f"{_ms(ours['bound_to_running_ms'], 'ms')}.",
        f"Operator memory: peak {ours['peak_rss_mib']:.0f} MiB (VmHWM; sampled VmRSS {ours['sampled_rss_mib']:.0f}), "
        f"{ours['idle_rss_mib']:.0f} MiB before the first TrainingJob. Cards double-booked: "
        f"{ours['gangs']['double_booked']}; nodes over 8 cards: {ours['gangs']['overfull_nodes']}.",
        f"Cycles: {int(cycles)}, {cycle_sum:.1f} s in all (mean {cycle_sum / max(cycles, 1):.2f} s) of "
        f"{ours['elapsed_s']:.1f} s; duration histogram (cumulative) {buckets}. Gangs placed "
        f"{int(m.get('archipelago_gangs_placed_total', 0))}; waiting at the end: "
        f"{', '.join(f'{k} {int(v)}' for k, v in m['pending'].items()) or 'none'}.",
        f"Operator log: {ours['log']['lines']} lines, {ours['log']['tracebacks']} tracebacks; "
        f"{'; '.join(f'{k} {v}' for k, v in ours['log']['levels'].items())}.",
    ]
    if ours.get("profile", {}).get("samples"):
        prof = ours["profile"]
        parts = "; ".join(f"{k} {100 * v / prof['samples']:.0f}%" for k, v in prof["parts"].items())
        top = "; ".join(f"`{f}` {100 * v / prof['samples']:.0f}%" for f, v in prof["top"][:10])
        out.append(f"Operator CPU by py-spy ({prof['samples']} non-idle samples at 20 Hz, all threads): {parts}.")
        out.append(f"Functions of ours, inclusive: {top}.")
    if ours["log"]["notable"]:
        out.append("Warnings seen: " + " | ".join(f"`{n}`" for n in ours["log"]["notable"]))
    for b in run["baselines"]:
        out += [
            "",
            f"kube-scheduler (client QPS {b['qps']}): pods created in {b['create_s']:.1f} s; first bound at "
            f"{b['first_bound_s']:.1f} s; 10/50/90% Running at {_q(b)} s; last at {b['elapsed_s']:.1f} s. Bound -> "
            f"Running (kwok): {_ms(b['bound_to_running_ms'], 'ms')}. Peak RSS of kube-scheduler "
            f"{b['peak_rss_mib']:.0f} MiB. Nodes over 8 cards: {b['gangs']['overfull_nodes']}.",
        ]
    out += ["", "CPU seconds over each run (2 cores: at most 2 s per second):", ""]
    runs = [("archipelago", ours)] + [(f"kube-scheduler QPS {b['qps']}", b) for b in run["baselines"]]
    names = list(dict.fromkeys(k for _, r in runs for k in r["cpu_s"]))
    out.append("| process | " + " | ".join(n for n, _ in runs) + " |")
    out.append("|---|" + "---|" * len(runs))
    for name in names:
        out.append(f"| {name} | " + " | ".join(f"{r['cpu_s'].get(name, 0):.1f}" for _, r in runs) + " |")
    walls = " | ".join(f"{r['elapsed_s']:.1f}" for _, r in runs)
    out.append(f"| wall s (first create to last Running) | {walls} |")
    out += ["", "API requests over each run, by verb and resource (most first; count, mean latency ms):", ""]
    for name, r in runs:
        top = ", ".join(f"{v} {res} {n} ({ms:.0f})" for v, res, n, ms in r["requests"][:10])
        out.append(f"- {name}: {top}")
    return out


def _q(r: dict[str, Any]) -> str:
    return "/".join(f"{v:.1f}" for v in r["quantiles"].values())


def _ms(q: dict[str, float], unit: str) -> str:
    if not q:
        return "n/a"
    return f"p50 {q['p50']:.1f} {unit}, p90 {q['p90']:.1f}, max {q['max']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,5000", help="node counts, comma-separated (8 cards each)")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=16, help="this script's creates in flight")
    parser.add_argument("--baseline-qps", default="default", help="kube-scheduler runs: 'default' and/or client QPS")
    parser.add_argument("--quiet", type=float, default=45.0, help="s without a new Running pod: the cluster is full")
    parser.add_argument("--run-deadline", type=float, default=1500.0, help="s each run may take")
    parser.add_argument("--setup-deadline", type=float, default=600.0, help="s any set-up wait may take")
    parser.add_argument("--work", type=pathlib.Path, help="work dir (default: a new one under /tmp)")
    parser.add_argument(
        "--py-spy",
        default=shutil.which("py-spy"),
        help="py-spy executable: samples the operator during its run (default: on PATH; '' for none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep etcd's data")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "controlplane.md",
                        help="results appended here")  # fmt: skip
    args = parser.parse_args()
    command = "python bench/controlplane.py " + " ".join(sys.argv[1:])
    root = args.work or pathlib.Path(tempfile.mkdtemp(prefix="archipelago-bench-"))
    if components.missing():
        raise SystemExit(f"controlplane: {components.missing()}")
    if not all((components.BIN / c).exists() for c in components.COMPONENTS):
        components.build(root / "logs")
    runs = []
    try:
        for n in (int(x) for x in args.nodes.split(",")):
            runs.append(measure(n, args, root))
    except (BenchError, components.ComponentError, AssertionError) as e:
        print(f"controlplane bench: {e}", file=sys.stderr)
        if not runs:
            raise SystemExit(1) from None
    finally:
        if runs:
            (root / "runs.json").write_text(json.dumps(runs, indent=1, default=str))
    text = report(runs, args, command)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write(text + "\n")


if __name__ == "__main__":
    main()
