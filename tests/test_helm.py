"""The Helm chart in ``helm/archipelago/``: lints clean, installs what ``deploy/`` installs, and its values work.

Lint and rendering are Helm v4's own engine, loaded from helm-python-sdk's shared library (no
helm binary, no cluster). The default render is compared with ``deploy/`` object by object: the
ClusterRole's rules, the Deployment's pod spec, the container's arguments as the real
``archipelago run`` parses them, the Service. tests/test_deploy.py checks ``deploy/`` against the
code, so the two checks together hold the chart to the code. Every render is validated against
Kubernetes' own OpenAPI schema, and bad values must be refused by the chart's values.schema.json
with the field named.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from archipelago import cli
from archipelago.api import labels
from archipelago.placement import plan
from tests.support import objects

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "archipelago"
RELEASE, NAMESPACE = "archipelago", "archipelago-system"
"""The release that gives the chart's objects ``deploy/``'s names."""
SEVERITY_WARNING = 2
"""helm lint's severities: 1 info, 2 warning, 3 error."""
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "standalone": {"peering": {"enabled": False}},
    "no-preemption": {"scheduler": {"preemption": False}},
    "other-ports-no-service": {"metrics": {"port": 9100, "service": {"enabled": False}}},
    "existing-priority-class": {"priorityClass": {"create": False, "name": "ops-critical"}},
    "placed-and-verbose": {
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]}
                    ]
                }
            }
        },
        "extraArgs": ["--verbose"],
    },
}
"""Values that reach every branch of the templates, each rendered and validated."""


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def rendered(chart: helm.Chart, values: dict[str, Any], *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path to text, as ``helm install --dry-run`` would make it."""
    return chart.render(values, name=RELEASE, namespace=namespace, is_install=True)


def render(chart: helm.Chart, *, namespace: str = NAMESPACE, **values: Any) -> dict[objects.Key, dict[str, Any]]:
    """The chart's objects for ``values`` (merged over values.yaml, as ``--set`` would), by (kind, name)."""
    texts = rendered(chart, values, namespace=namespace)
    manifests = [text for path, text in texts.items() if path.endswith(".yaml")]
    return objects.keyed(doc for text in manifests for doc in objects.documents(text))


def deployment(found: dict[objects.Key, dict[str, Any]]) -> dict[str, Any]:
    (only,) = (doc for (kind, _), doc in found.items() if kind == "Deployment")
    return only


def container(found: dict[objects.Key, dict[str, Any]]) -> dict[str, Any]:
    (only,) = deployment(found)["spec"]["template"]["spec"]["containers"]
    return only


def args(found: dict[objects.Key, dict[str, Any]]) -> list[str]:
    return container(found)["args"]


def run_options(arguments: list[str]) -> dict[str, Any]:
    """The ``archipelago run`` options ``arguments`` give, parsed by the real command (which raises on bad ones)."""
    assert arguments[0] == "run", arguments
    return cli.run.make_context("run", list(arguments[1:])).params


def follows(arguments: list[str], option: str) -> str:
    """The value right after ``option``."""
    return arguments[arguments.index(option) + 1]


# (a) Helm accepts the chart and Kubernetes every object it renders


def test_helm_lint_reports_no_error_or_warning_with_the_default_values():
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= SEVERITY_WARNING] == []


@pytest.mark.parametrize("version", objects.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_kubernetes_own_schema_accepts_every_rendered_object(chart, variant, version):
    found = render(chart, **VARIANTS[variant])
    assert ("Deployment", RELEASE) in found
    for document in found.values():
        objects.validate(document, version)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_real_command_accepts_the_rendered_arguments(chart, variant):
    assert run_options(args(render(chart, **VARIANTS[variant])))


def test_kubernetes_own_schema_rejects_a_misspelled_field_in_a_render(chart):
    document = deployment(render(chart, securityContext={"readOnlyRootFileSystem": True}))
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        objects.validate(document, objects.KUBERNETES_VERSIONS[-1])


# (b) the defaults install what deploy/ installs


@pytest.fixture(scope="module")
def default(chart) -> dict[objects.Key, dict[str, Any]]:
    return render(chart)


def test_the_default_render_has_the_objects_of_deploy_but_the_namespace(default):
    assert set(default) == set(objects.deploy()) - {("Namespace", NAMESPACE)}


def test_every_object_has_deploys_labels_and_the_standard_ones(default):
    deploy = objects.deploy()
    for key, document in default.items():
        have = document["metadata"]["labels"]
        assert deploy[key]["metadata"]["labels"].items() <= have.items(), key
        assert have[labels.MANAGED_BY] == "Helm", key
        assert have["app.kubernetes.io/instance"] == RELEASE, key
        assert have["helm.sh/chart"] == "archipelago-0.1.0", key


def test_the_cluster_role_has_the_rules_of_deploy(default):
    assert default["ClusterRole", RELEASE]["rules"] == objects.deploy()["ClusterRole", RELEASE]["rules"]


def test_the_role_is_bound_as_in_deploy(default):
    deploy = objects.deploy()
    for field in ("roleRef", "subjects"):
        assert default["ClusterRoleBinding", RELEASE][field] == deploy["ClusterRoleBinding", RELEASE][field]


def test_the_priority_class_is_deploys(default):
    name = deployment(default)["spec"]["template"]["spec"]["priorityClassName"]
    ours, theirs = default["PriorityClass", name], objects.deploy()["PriorityClass", name]
    assert {k: v for k, v in ours.items() if k != "metadata"} == {k: v for k, v in theirs.items() if k != "metadata"}


def without_args(spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec with its containers' args left out, to compare the rest as it is."""
    return spec | {"containers": [{k: v for k, v in c.items() if k != "args"} for c in spec["containers"]]}


def test_the_deployment_is_deploys_but_for_its_labels_and_argument_spelling(default):
    ours, theirs = deployment(default), objects.deploy()["Deployment", RELEASE]
    assert ours["metadata"]["namespace"] == theirs["metadata"]["namespace"]
    for field in ("replicas", "strategy"):
        assert ours["spec"][field] == theirs["spec"][field], field
    assert without_args(ours["spec"]["template"]["spec"]) == without_args(theirs["spec"]["template"]["spec"])
    assert theirs["spec"]["selector"]["matchLabels"].items() <= ours["spec"]["selector"]["matchLabels"].items()
    assert ours["spec"]["selector"]["matchLabels"].items() <= ours["spec"]["template"]["metadata"]["labels"].items()


def test_the_container_runs_with_the_options_deploy_gives(default):
    (theirs,) = objects.deploy()["Deployment", RELEASE]["spec"]["template"]["spec"]["containers"]
    assert run_options(args(default)) == run_options(theirs["args"])


def test_the_metrics_service_is_deploys_and_selects_the_operator(default):
    ours, theirs = default["Service", "archipelago-metrics"], objects.deploy()["Service", "archipelago-metrics"]
    assert ours["metadata"]["annotations"] == theirs["metadata"]["annotations"]
    assert {k: v for k, v in ours["spec"].items() if k != "selector"} == {
        k: v for k, v in theirs["spec"].items() if k != "selector"
    }
    pod_labels = deployment(default)["spec"]["template"]["metadata"]["labels"]
    assert theirs["spec"]["selector"].items() <= ours["spec"]["selector"].items() <= pod_labels.items()


def test_the_operator_pod_is_not_one_of_the_pods_it_manages(default):
    pod_labels = deployment(default)["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.get(labels.MANAGED_BY) != labels.MANAGER


def test_the_namespace_is_labelled_as_deploy_labels_it_where_the_chart_says_how(chart):
    """The chart cannot create its release namespace, so README.md and NOTES.txt give the labels."""
    (namespace,) = (doc for (kind, _), doc in objects.deploy().items() if kind == "Namespace")
    security = {k: v for k, v in namespace["metadata"]["labels"].items() if k.startswith("pod-security.kubernetes.io/")}
    notes = rendered(chart, {})["archipelago/templates/NOTES.txt"]
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert security
    for label in (f"{key}={value}" for key, value in security.items()):
        assert label in notes and label in readme, label


def test_every_namespaced_object_is_in_the_release_namespace(chart):
    found = render(chart, namespace="scheduling")
    for (kind, name), document in found.items():
        expected = None if kind in objects.CLUSTER_SCOPED else "scheduling"
        assert document["metadata"].get("namespace") == expected, f"{kind}/{name}"
    (subject,) = found["ClusterRoleBinding", RELEASE]["subjects"]
    assert subject["namespace"] == "scheduling"


def test_the_app_version_is_the_operators_version_and_the_default_image_tag(default):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == version
    assert container(default)["image"] == f"ghcr.io/archipelago-dev/archipelago:{version}"


# (c) values change the render


def test_without_peering_the_operator_runs_standalone_with_no_peering_object_or_rights(chart):
    found = render(chart, peering={"enabled": False})
    assert "--peering" not in args(found) and "--priority" not in args(found)
    assert run_options(args(found))["peering"] is None
    assert not [key for key in found if key[0] == "ClusterKopfPeering"]
    assert {grant for grant in objects.grants(found["ClusterRole", RELEASE]) if grant[0] == "kopf.dev"} == set()


def test_the_peering_name_and_priority_reach_the_arguments_the_object_and_the_role(chart):
    found = render(chart, peering={"name": "schedulers", "priority": 50})
    options = run_options(args(found))
    assert (options["peering"], options["priority"]) == ("schedulers", 50)
    assert ("ClusterKopfPeering", "schedulers") in found
    assert ("kopf.dev", "clusterkopfpeerings", "patch", "schedulers") in objects.grants(found["ClusterRole", RELEASE])


def test_a_preemption_delay_is_passed_on(chart):
    arguments = args(render(chart, scheduler={"preemptionDelaySeconds": 5}))
    assert follows(arguments, "--preemption-delay") == "5"
    assert run_options(arguments)["preemption_delay"] == 5.0


def test_a_preemption_exemption_is_passed_on(chart):
    assert run_options(args(render(chart)))["preemption_exempt"] == 0.0
    arguments = args(render(chart, scheduler={"preemptionExemptSeconds": 120}))
    assert follows(arguments, "--preemption-exempt") == "120"
    assert run_options(arguments)["preemption_exempt"] == 120.0


def test_a_spread_delay_is_passed_on_and_defaults_to_the_schedulers(chart):
    assert run_options(args(render(chart)))["spread_delay"] == plan.Config.spread_delay_s
    arguments = args(render(chart, scheduler={"spreadDelaySeconds": 300}))
    assert follows(arguments, "--spread-delay") == "300"
    assert run_options(arguments)["spread_delay"] == 300.0


def test_the_default_queueing_strategy_is_the_schedulers(chart):
    assert run_options(args(render(chart)))["queueing"] is plan.Config.queueing


@pytest.mark.parametrize("strategy", plan.Queueing)
def test_every_queueing_strategy_is_passed_on(chart, strategy):
    arguments = args(render(chart, scheduler={"queueingStrategy": strategy.value}))
    assert follows(arguments, "--queueing") == strategy.value
    assert run_options(arguments)["queueing"] is strategy


def test_preemption_off_is_no_preemption(chart):
    arguments = args(render(chart, scheduler={"preemption": False}))
    assert "--no-preemption" in arguments
    assert run_options(arguments)["no_preemption"] is True


def test_the_budget_and_resync_are_passed_on(chart):
    options = run_options(args(render(chart, scheduler={"budgetSeconds": 0.25, "resyncSeconds": 2.5})))
    assert (options["budget"], options["resync"]) == (0.25, 2.5)


def test_an_image_tag_overrides_the_app_version(chart):
    image = {"repository": "registry.example/archipelago", "tag": "0.2.0-rc1", "pullPolicy": "Always"}
    found = render(chart, image=image)
    assert container(found)["image"] == "registry.example/archipelago:0.2.0-rc1"
    assert container(found)["imagePullPolicy"] == "Always"


def test_the_metrics_port_moves_the_argument_the_container_port_and_the_service(chart):
    found = render(chart, metrics={"port": 9100})
    service = found["Service", "archipelago-metrics"]
    assert run_options(args(found))["metrics_port"] == 9100
    assert {p["name"]: p["containerPort"] for p in container(found)["ports"]}["metrics"] == 9100
    assert [p["port"] for p in service["spec"]["ports"]] == [9100]
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9100"


def test_the_metrics_service_can_be_left_out(chart):
    assert not [key for key in render(chart, metrics={"service": {"enabled": False}}) if key[0] == "Service"]


def test_an_existing_priority_class_is_used_and_none_is_created(chart):
    found = render(chart, priorityClass={"create": False, "name": "ops-critical"})
    assert not [key for key in found if key[0] == "PriorityClass"]
    assert deployment(found)["spec"]["template"]["spec"]["priorityClassName"] == "ops-critical"


def test_placement_resources_and_extra_arguments_reach_the_pod(chart):
    values = VARIANTS["placed-and-verbose"] | {"resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}
    found = render(chart, **values)
    pod = deployment(found)["spec"]["template"]["spec"]
    assert values["nodeSelector"].items() <= pod["nodeSelector"].items()
    assert (pod["tolerations"], pod["affinity"]) == (values["tolerations"], values["affinity"])
    assert container(found)["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    assert args(found)[-1] == "--verbose" and run_options(args(found))["verbose"] is True


# (d) the CRDs are the repository's


def test_the_charts_crds_are_the_repositorys_byte_for_byte():
    theirs = {path.name: path.read_bytes() for path in (ROOT / "crds").glob("*.yaml")}
    ours = {path.name: path.read_bytes() for path in (CHART / "crds").iterdir()}
    assert sorted(ours) == sorted(theirs), "copy crds/*.yaml into helm/archipelago/crds/"
    stale = [name for name in theirs if ours[name] != theirs[name]]
    assert stale == [], f"helm/archipelago/crds/ differs from crds/: cp crds/*.yaml helm/archipelago/crds/ ({stale})"


def test_helm_installs_every_crd_file_before_the_templates(chart):
    theirs = sorted(path.name for path in (ROOT / "crds").glob("*.yaml"))
    assert sorted(Path(crd["name"]).name for crd in chart.crds) == theirs


# (e) bad values are refused with the field named

BAD_VALUES = {
    "negative-budget": ({"scheduler": {"budgetSeconds": -1}}, "/scheduler/budgetSeconds"),
    "unknown-top-level-key": ({"replicas": 2}, "'replicas' not allowed"),
    "misspelt-nested-key": ({"scheduler": {"budget": 2}}, "'budget' not allowed"),
    "negative-preemption-delay": ({"scheduler": {"preemptionDelaySeconds": -5}}, "/scheduler/preemptionDelaySeconds"),
    "negative-preemption-exemption": (
        {"scheduler": {"preemptionExemptSeconds": -1}},
        "/scheduler/preemptionExemptSeconds",
    ),
    "negative-spread-delay": ({"scheduler": {"spreadDelaySeconds": -1}}, "/scheduler/spreadDelaySeconds"),
    "unknown-queueing-strategy": ({"scheduler": {"queueingStrategy": "StrictFIFO"}}, "/scheduler/queueingStrategy"),
    "priority-not-a-number": ({"peering": {"priority": "high"}}, "/peering/priority"),
    "system-priority-value": ({"priorityClass": {"value": 2_000_000_000}}, "/priorityClass/value"),
    "unknown-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
}


@pytest.mark.parametrize("values, field", BAD_VALUES.values(), ids=BAD_VALUES)
def test_a_bad_value_fails_the_render_naming_the_field(chart, values, field):
    with pytest.raises(helm.HelmValuesError, match=field):
        rendered(chart, values)


@pytest.mark.parametrize("values, field", BAD_VALUES.values(), ids=BAD_VALUES)
def test_a_bad_value_fails_helm_lint_naming_the_field(values, field):
    report = helm.lint(CHART, values, strict=True)
    assert any(field in error for error in report["errors"]), report


def test_the_liveness_port_as_metrics_port_fails_the_render_saying_why(chart):
    with pytest.raises(helm.HelmRenderError, match="metrics.port: 8080 is kopf's liveness port"):
        rendered(chart, {"metrics": {"port": 8080}})
