"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and kwok.

The binaries come from ``build.sh`` (k8s.io/kubernetes v1.36.3, sigs.k8s.io/kwok v0.8.0, etcd's
``embed`` package), built into ``bin/``. ``ControlPlane.start`` gives each component a free
loopback port, its own data directory and log file under one work directory, and waits for each
with a deadline; a component that exits or does not become ready raises ``ComponentError``, one
line naming the component and its log. ``stop`` ends them in reverse order.

Authentication: the tests are ``admin`` (group ``system:masters``) by a static token; the
operator gets its own kubeconfig from ``service_account_kubeconfig``, a TokenRequest token of a
ServiceAccount, so RBAC decides what it may do exactly as in a cluster. Serving certificates and
the service-account signing key are made with ``openssl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence

HERE = pathlib.Path(__file__).resolve().parent
BIN = HERE / "bin"
BUILD = HERE / "build.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
ADMIN_TOKEN = "archipelago-admin-token"  # noqa: S105 - a test cluster on loopback
READY_DEADLINE_S = 90.0
"""Seconds any one component may take to become ready."""
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
"""Nodes annotated ``kwok.x-k8s.io/node: fake`` are the ones kwok keeps alive (leases, pod phases)."""
CUSTOM_STATUS = "kwok.x-k8s.io/status"
"""A pod or node annotated ``kwok.x-k8s.io/status: custom`` is left alone by kwok: a test writes its status
(a pod Failed on request, a node NotReady)."""
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "resourcequota-controller",
    "node-lifecycle-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
)
"""kube-controller-manager's controllers the suite relies on: cascade deletion, namespace
cleanup, the ``default`` ServiceAccount pods need, ResourceQuota usage, node leases to
Ready=Unknown, PodDisruptionBudget status for the Eviction API, and the removal of pods whose
node was deleted."""


class ComponentError(RuntimeError):
    """A component could not be built, started or made ready; the message names it and its log."""


def missing() -> str | None:
    """Why the control plane cannot run here (no Go and no binaries), or None when it can."""
    if all((BIN / c).exists() for c in COMPONENTS):
        return None
    if shutil.which("go") is None:
        return "no Go toolchain on PATH to build kube-apiserver, etcd and kwok (tests/controlplane/build.sh)"
    return None


def build(log_dir: pathlib.Path) -> None:
    """Run ``build.sh`` (seconds when the Go build cache is warm); raises ``ComponentError``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "build.log"
    with log.open("w") as out:
        done = subprocess.run([str(BUILD)], stdout=out, stderr=subprocess.STDOUT, check=False, timeout=3600)
    if done.returncode:
        lines = log.read_text().strip().splitlines()
        raise ComponentError(f"{lines[-1] if lines else 'build.sh failed'} (full log: {log})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: pathlib.Path

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise ComponentError(f"{self.name} exited with code {self.popen.returncode}; see {self.log}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def wait_for(what: Process, ready: Callable[[], bool], deadline_s: float = READY_DEADLINE_S) -> None:
    """Poll ``ready`` until true; raises ``ComponentError`` if the process exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        what.check()
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > end:
            raise ComponentError(f"{what.name} not ready after {deadline_s:.0f} s; see {what.log}")
        time.sleep(0.2)


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    if shutil.which("openssl") is None:
        raise ComponentError("openssl not found on PATH: it makes the test cluster's certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(pki: pathlib.Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 and localhost, and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3", "-subj", "/CN=archipelago-test-ca", cwd=pki)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "serving.key", "-out", "serving.csr",
             "-subj", "/CN=127.0.0.1", cwd=pki)  # fmt: skip
    _openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "serving.crt", "-days", "3", "-extfile", "san.cnf", cwd=pki)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(path: pathlib.Path, server: str, ca: pathlib.Path, token: str, user: str) -> pathlib.Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: archipelago-test
  cluster: {{server: "{server}", certificate-authority: "{ca}"}}
users:
- name: {user}
  user: {{token: "{token}"}}
contexts:
- name: {user}
  context: {{cluster: archipelago-test, user: {user}}}
current-context: {user}
"""
    )
    return path


@dataclasses.dataclass
class ControlPlane:
    """The running components, the admin kubeconfig and the server's address."""

    work: pathlib.Path
    processes: list[Process] = dataclasses.field(default_factory=list)
    server: str = ""
    admin_kubeconfig: pathlib.Path | None = None

    @property
    def pki(self) -> pathlib.Path:
        return self.work / "pki"

    def _spawn(self, name: str, args: Sequence[str]) -> Process:
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("w")
        popen = subprocess.Popen(  # noqa: S603 - our own binaries
            [str(BIN / name), *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, context=context, timeout=5) as answer:  # noqa: S310 - https to loopback
            return answer.read().decode()

    def start(self) -> ControlPlane:
        """Start every component and wait for each; on failure everything started is stopped."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        make_pki(self.pki)
        client, peer, secure = free_port(), free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            ["-data-dir", str(self.work / "etcd"), "-listen-client-url", f"http://127.0.0.1:{client}",
             "-listen-peer-url", f"http://127.0.0.1:{peer}"],
        )  # fmt: skip
        wait_for(etcd, lambda: "etcd ready" in etcd.log.read_text())
        (self.work / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        self.server = f"https://127.0.0.1:{secure}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure}",
                f"--tls-cert-file={self.pki / 'serving.crt'}",
                f"--tls-private-key-file={self.pki / 'serving.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}",
                f"--token-auth-file={self.work / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={self.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={self.work / 'apiserver-certs'}",
            ],
        )
        wait_for(apiserver, lambda: self._get("/readyz") == "ok")
        self.admin_kubeconfig = kubeconfig(
            self.work / "admin.kubeconfig", self.server, self.pki / "ca.crt", ADMIN_TOKEN, "admin"
        )
        manager = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--secure-port={free_port()}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.work / 'kcm-certs'}",
                "--node-monitor-grace-period=20s",
                "--concurrent-gc-syncs=20",
                # Its client's default 20 requests/s untaints KWOK nodes at 10/s (552 s for 5,000).
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        kwok = self._spawn("kwok", [f"--kubeconfig={self.admin_kubeconfig}", f"--config={self._kwok_config()}"])
        wait_for(manager, lambda: "Started controller" in manager.log.read_text() or self._controllers_running())
        wait_for(kwok, lambda: kwok.log.stat().st_size > 0)
        time.sleep(0.5)
        kwok.check()

    def _kwok_config(self) -> pathlib.Path:
        """kwok's options and the Stages ``build.sh`` copied from its module, as one config file."""
        options = f"""apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageAllNodes: false
  manageNodesWithAnnotationSelector: {KWOK_ANNOTATION}=fake
  disregardStatusWithAnnotationSelector: {CUSTOM_STATUS}=custom
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 16
  nodePlayStageParallelism: 16
  podPlayStageParallelism: 16
  podsOnNodeSyncParallelism: 16
  cidr: 10.0.0.0/16
  nodeIP: 10.0.0.1
  serverAddress: 127.0.0.1:{free_port()}
"""
        stages = sorted((BIN / "kwok-stages").glob("*.yaml"))
        if not stages:
            raise ComponentError(f"kwok: no Stages in {BIN / 'kwok-stages'}; run {BUILD}")
        path = self.work / "kwok.yaml"
        path.write_text("\n---\n".join([options, *(s.read_text() for s in stages)]))
        return path

    def _controllers_running(self) -> bool:
        return "garbagecollector" in (self.work / "logs" / "kube-controller-manager.log").read_text()

    def start_scheduler(self) -> Process:
        """The real kube-scheduler, for the benchmark's baseline; stopped with the rest."""
        scheduler = self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--authentication-kubeconfig={self.admin_kubeconfig}",
                f"--authorization-kubeconfig={self.admin_kubeconfig}",
                "--leader-elect=false",
                f"--secure-port={free_port()}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.work / 'scheduler-certs'}",
            ],
        )
        time.sleep(1.0)
        scheduler.check()
        return scheduler

    def check(self) -> None:
        """Raise ``ComponentError`` naming the first component that has exited."""
        for process in self.processes:
            process.check()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, token: str) -> pathlib.Path:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` with ``token``."""
    path = plane.work / f"{namespace}.{name}.kubeconfig"
    return kubeconfig(path, plane.server, plane.pki / "ca.crt", token, f"system:serviceaccount:{namespace}:{name}")


def environment(kubeconfig_path: pathlib.Path) -> dict[str, str]:
    """The environment of a process that should talk to the test cluster only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig_path)
    return env
