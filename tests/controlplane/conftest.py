"""Fixtures of the real control plane: one per test session, a namespace and an operator per test.

Skipped, with the reason, where neither Go nor the built binaries are present. ``build.sh`` runs
first (seconds once the Go build cache is warm); every component is started on loopback with its
own port, data directory and log under pytest's temporary directory, and stopped at the end.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.controlplane import components, kube

_tests = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[components.ControlPlane]:
    reason = components.missing()
    if reason:
        pytest.skip(f"real control plane skipped: {reason}")
    work = tmp_path_factory.mktemp("controlplane")
    try:
        components.build(work / "logs")
        plane = components.ControlPlane(work).start()
    except components.ComponentError as e:
        pytest.fail(f"control plane: {e}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def installed(control_plane: components.ControlPlane) -> kube.Installed:
    return kube.install(control_plane)


@pytest.fixture
def cluster(installed: kube.Installed, control_plane: components.ControlPlane) -> Iterator[kube.Cluster]:
    """This test's namespace, pools and nodes; all removed at the end (before the operator stops)."""
    number = next(_tests)
    prefix = f"t{number}"
    namespace = f"test-{number}"
    installed_core = kube.kubernetes.client.CoreV1Api(installed.admin)
    installed_core.create_namespace({"metadata": {"name": namespace}})
    kube.eventually(
        lambda: installed_core.read_namespaced_service_account("default", namespace), what="the default ServiceAccount"
    )
    found = kube.Cluster(installed.admin, prefix, namespace)
    yield found
    control_plane.check()


@pytest.fixture
def operator(
    installed: kube.Installed, cluster: kube.Cluster, tmp_path: pathlib.Path
) -> Iterator[Callable[..., kube.Operator]]:
    """Start ``archipelago run`` (``operator(*extra_args)``); it runs until the test's cluster is torn down."""
    started: list[kube.Operator] = []

    def start(*args: str) -> kube.Operator:
        process = kube.start_operator(installed, tmp_path, *args)
        started.append(process)
        return process

    yield start
    try:
        if not any(p.alive() for p in started):
            start()  # the finalizers need an operator to release them
        cluster.teardown()
    finally:
        for process in started:
            process.stop()
        failed = [p for p in started if "Traceback" in p.text() and "scheduling cycle failed" in p.text()]
        assert not failed, f"a scheduling cycle raised: see {failed[0].log}"
