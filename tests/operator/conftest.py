"""Fixtures that run a real kopf operator against the emulated API server, over real HTTP.

The emulator and every operator run in their own threads and event loops: the synchronous
kubernetes client blocks its caller, and ``kopf.operator()`` cancels every task of its loop when
it exits. So tests are plain functions: they call the client directly and wait with
``eventually``. Create the nodes a test needs before starting the operator, so its index holds
them before the first handler runs. Read objects through the client: ``emulator.objects`` is
the live state of another thread. ``emulator.calls``, ``deletions``, ``fail()``, ``stall()``
and ``count()`` are safe to use from the test.

Usage::

    def test_a_job_gets_a_pod(operator, custom_objects, core_v1, kubelet, eventually):
        kubelet.add_node("n1", capacity={"nvidia.com/gpu": "8"})
        operator(registry)  # a kopf.OperatorRegistry, e.g. the product's
        custom_objects.create_namespaced_custom_object(api.GROUP, api.VERSION, "ns", "trainingjobs", job)
        eventually(lambda: core_v1.list_namespaced_pod("ns").items)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import kmock
import kopf
import kubernetes
import pytest

from archipelago import api
from archipelago.api import resources
from tests.operator import emulator as apiserver

T = TypeVar("T")
DEADLINE = 10.0  # seconds for any start, stop or wait of the harness itself
CORE_RESOURCES = (
    "v1/pods",
    "v1/nodes",
    "v1/events",
    "v1/services",
    "v1/namespaces",
    "scheduling.k8s.io/v1/priorityclasses",
    "coordination.k8s.io/v1/leases",
    "policy/v1/poddisruptionbudgets",
    "events.k8s.io/v1/events",
)

_server: contextvars.ContextVar[str] = contextvars.ContextVar("emulator_url")  # per operator thread
_wired: weakref.WeakSet[kopf.OperatorRegistry] = weakref.WeakSet()


@pytest.fixture
def validate_schema() -> apiserver.Validate | None:
    """The CRD schema check for custom resource writes; a test module may override this fixture."""
    try:
        from tests.support import schemas
    except ImportError:  # written alongside this harness
        return None
    return schemas.validate


@pytest.fixture
def emulator(validate_schema: apiserver.Validate | None) -> Iterator[apiserver.Emulator]:
    served = apiserver.Emulator(validate=validate_schema)
    bundled = kmock.ResourcesArray()
    with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        bundled.load_bundled()
    for resource in CORE_RESOURCES:  # a few, not kmock's 71: kopf's discovery stays short
        served.resources[resource] = bundled[resource]
    for kind in resources.KINDS:
        served.add_custom_resource(
            api.GROUP,
            api.VERSION,
            kind.plural,
            kind=kind.kind,
            namespaced=kind.namespaced,
            singular=kind.singular,
            shortnames=set(kind.short_names),
            categories=set(kind.categories),
        )
    with _loop_thread("emulator") as run:
        server = kmock.Server(served)
        run(served.__aenter__())
        run(server.__aenter__())
        try:
            yield served
        finally:
            run(served.close())
            run(server.__aexit__(None, None, None))
            run(served.__aexit__(None, None, None))


@pytest.fixture
def api_client(emulator: apiserver.Emulator) -> Iterator[kubernetes.client.ApiClient]:
    configuration = kubernetes.client.Configuration(host=str(emulator.url).rstrip("/"))
    configuration.retries = False  # one call, one request: tests count requests
    with kubernetes.client.ApiClient(configuration) as client:
        yield client


@pytest.fixture
def core_v1(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def custom_objects(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


@pytest.fixture
def kubelet(core_v1: kubernetes.client.CoreV1Api) -> Kubelet:
    return Kubelet(core_v1)


@pytest.fixture
def operator(emulator: apiserver.Emulator) -> Iterator[Callable[..., Operator]]:
    """Start a kopf operator for a registry: ``operator(registry, configure=fn, memo=obj)``; stopped at teardown."""
    started: list[Operator] = []

    def start(
        registry: kopf.OperatorRegistry,
        *,
        configure: Callable[[kopf.OperatorSettings], None] | None = None,
        memo: Any = None,
    ) -> Operator:
        running = Operator(registry, str(emulator.url), configure=configure, memo=memo)
        started.append(running)
        running.start()
        return running

    yield start
    with contextlib.ExitStack() as stack:  # stop them all, then raise what any of them raised
        for running in started:
            stack.callback(running.stop)


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return wait_until


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, *, interval: float = 0.02) -> T:
    """Poll until ``predicate()`` is truthy and return it; failing at the deadline with the last answer.

    "Not yet" includes the errors of reading what is not there yet: an AssertionError, a missing key
    or index, subscripting None, and an ApiException (such as 404).
    """
    deadline = time.monotonic() + timeout
    while True:
        result: Any = None
        failure: Exception | None = None
        try:
            result = predicate()
        except (AssertionError, LookupError, TypeError, kubernetes.client.ApiException) as e:
            failure = e
        if result:
            return result
        if time.monotonic() >= deadline:
            try:
                source = inspect.getsource(predicate).strip()
            except (OSError, TypeError):
                source = repr(predicate)
            last = f"{type(failure).__name__}: {failure}" if failure else repr(result)
            raise AssertionError(f"not true within {timeout} s: {source}\nlast: {last}") from failure
        time.sleep(interval)


class Operator:
    """One registry's kopf operator, run in its own thread and event loop; it may be stopped and started again."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        server: str,
        *,
        configure: Callable[[kopf.OperatorSettings], None] | None,
        memo: Any,
    ) -> None:
        self.registry, self.server, self.configure, self.memo = registry, server, configure, memo
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop: Callable[[], Any] = lambda: None
        if registry not in _wired:
            kopf.on.login(registry=registry, id="emulator-login")(_login)
            _wired.add(registry)

    def start(self, timeout: float = DEADLINE) -> None:
        """Return once the startup handlers have run; the watches begin right after."""
        if self._thread is not None:
            raise RuntimeError("the operator is running")
        ready, self._stop, self.error = threading.Event(), lambda: None, None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="kopf", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.01):
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError("the operator exited before it was ready") from self.error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the operator was not ready within {timeout} s")

    def stop(self, timeout: float = DEADLINE) -> None:
        """Stop and join the operator; re-raise what crashed it, if anything."""
        if self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop is closed if it has exited by itself
            self._stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the operator did not stop within {timeout} s")
        self._thread = None
        if self.error is not None:
            raise self.error

    def restart(self) -> None:
        self.stop()
        self.start()

    def _run(self, ready: threading.Event) -> None:
        _server.set(self.server)
        settings = _settings(self.configure)
        try:
            asyncio.run(self._operate(ready, settings))
        except BaseException as e:  # reported by start() or stop(), in the test's thread
            self.error = e
        finally:
            settings.execution.executor.shutdown(wait=False)

    async def _operate(self, ready: threading.Event, settings: kopf.OperatorSettings) -> None:
        # An asyncio stop flag: kopf waits for a threading.Event in an executor thread that
        # outlives a crash, so an operator that fails on its own would hang until stopped.
        stop_flag = asyncio.Event()
        self._stop = functools.partial(asyncio.get_running_loop().call_soon_threadsafe, stop_flag.set)
        await kopf.operator(
            registry=self.registry,
            settings=settings,
            standalone=True,
            clusterwide=True,
            ready_flag=ready,
            stop_flag=stop_flag,
            memo=self.memo,
        )


async def _login(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=_server.get())  # explicit: kopf then looks for no kubeconfig


def _settings(configure: Callable[[kopf.OperatorSettings], None] | None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()  # status.kopf would break the schema
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    settings.posting.level = logging.WARNING  # fewer Events to create and to read past
    settings.watching.server_timeout = 10  # streams end and resume from their version now and then
    settings.watching.client_timeout = 15
    settings.networking.request_timeout = 5  # a stalled request fails the call, not the test's deadline
    settings.networking.error_backoffs = (0.1, 0.2, 0.5)
    if configure is not None:
        configure(settings)
    return settings


@dataclasses.dataclass(frozen=True)
class Kubelet:
    """Plays the node agents: registers nodes, reports their readiness and moves pods through phases."""

    core: kubernetes.client.CoreV1Api

    def add_node(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
        ready: bool = True,
    ) -> kubernetes.client.V1Node:
        allocatable = {"cpu": "128", "memory": "1Ti", "pods": "110", **(capacity or {})}
        status = {"capacity": allocatable, "allocatable": allocatable, "conditions": [_ready(ready)]}
        metadata = {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}
        return self.core.create_node({"metadata": metadata, "spec": {}, "status": status})

    def node_ready(self, name: str, ready: bool = True) -> None:
        self.core.patch_node_status(name, {"status": {"conditions": [_ready(ready)]}})

    def set_phase(self, pod: Any, phase: str, *, namespace: str = "default", reason: str | None = None) -> None:
        """Move a pod (its name, a V1Pod or a dict) to Pending, Running, Succeeded or Failed."""
        if isinstance(pod, dict):
            pod, namespace = pod["metadata"]["name"], pod["metadata"].get("namespace", namespace)
        elif not isinstance(pod, str):
            pod, namespace = pod.metadata.name, pod.metadata.namespace
        ready = {"type": "Ready", "status": str(phase == "Running")}
        status = {"phase": phase, "conditions": [ready], **({"reason": reason} if reason else {})}
        self.core.patch_namespaced_pod_status(pod, namespace, {"status": status})


def _ready(ready: bool) -> dict[str, str]:
    return {"type": "Ready", "status": str(ready), "reason": "KubeletReady" if ready else "KubeletNotReady"}


@contextlib.contextmanager
def _loop_thread(name: str) -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """An event loop in a daemon thread, and a function that runs a coroutine in it and waits."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    try:
        yield lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(DEADLINE)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE)
        loop.close()
