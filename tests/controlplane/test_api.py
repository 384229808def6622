"""The committed CRDs on the real kube-apiserver, without an operator: what users meet when they apply.

Every example manifest applies server-side and keeps every field it states; the printer columns
the CRDs declare come back in the API server's Table, filled from the status; the typical
mistakes ``tests/test_crds.py`` checks against the schemas are refused by the API server itself,
with the field named and the CEL rule's own message, and so is a workload name too long for the
labels of its pods. Requests use strict field validation, as kubectl does by default.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException

from archipelago import api
from archipelago.api import crd, resources
from tests.controlplane import components, kube
from tests.support import schemas
from tests.test_crds import BY_KIND, EXAMPLES, MISTAKES, WORKLOADS, example, load, make_training_job, openapi

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
MANAGER = "archipelago-tests"
CONDITIONS = [
    {"type": "Preempted", "status": "False", "reason": "NotPreempted", "lastTransitionTime": "2026-11-21T10:00:00Z"},
    {"type": "Scheduled", "status": "True", "reason": "Placed", "lastTransitionTime": "2026-11-21T10:01:00Z"},
]
PLACEMENT = {"pods": 3, "cards": 16, "milliCards": 16000, "nodes": ["h800-0", "h800-1"], "islands": ["b", "c"]}
STATUS = {
    "AcceleratorPool": {"nodes": 2, "cards": 16, "allocatedMilliCards": 8250},
    "TrainingJob": {"phase": "Running", "conditions": CONDITIONS, "placement": PLACEMENT, "restarts": 2},
    "InferenceService": {"phase": "Running", "conditions": CONDITIONS, "placement": PLACEMENT},
}
"""A status per kind that fills every printer column (the Reason column must pick Scheduled of two)."""


@pytest.fixture
def bare(cluster: kube.Cluster) -> Iterator[kube.Cluster]:
    """This test's namespace on the shared control plane, with no operator; removed with its pools at the end."""
    yield cluster
    cluster.teardown()


def placed(body: dict[str, Any], cluster: kube.Cluster) -> dict[str, Any]:
    """``body`` in the test's namespace or, cluster-scoped, under a name of the test's (removed at the end)."""
    body = copy.deepcopy(body)
    if BY_KIND[body["kind"]].namespaced:
        body["metadata"]["namespace"] = cluster.namespace
    else:
        body["metadata"]["name"] = f"{cluster.prefix}-{body['metadata']['name']}"
        cluster.pools.append(body["metadata"]["name"])
    return body


def create(cluster: kube.Cluster, body: dict[str, Any]) -> dict[str, Any]:
    kind = BY_KIND[body["kind"]]
    if kind.namespaced:
        return cluster.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, cluster.namespace, kind.plural, body, field_validation="Strict"
        )
    return cluster.custom.create_cluster_custom_object(
        api.GROUP, api.VERSION, kind.plural, body, field_validation="Strict"
    )


def read(cluster: kube.Cluster, kind: resources.Kind, name: str) -> dict[str, Any]:
    if kind.namespaced:
        return cluster.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, cluster.namespace, kind.plural, name)
    return cluster.custom.get_cluster_custom_object(api.GROUP, api.VERSION, kind.plural, name)


def refusal(cluster: kube.Cluster, body: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]]]:
    """The HTTP status, message and (field, message) causes with which the API server refuses ``body``."""
    with pytest.raises(ApiException) as caught:
        create(cluster, body)
    status = json.loads(caught.value.body)
    causes = [(c.get("field", ""), c.get("message", "")) for c in (status.get("details") or {}).get("causes") or ()]
    return caught.value.status, status["message"], causes


def holds(stored: Any, stated: Any) -> bool:
    """Whether ``stored`` keeps everything ``stated`` says (the server may add defaulted fields)."""
    if isinstance(stated, dict):
        return isinstance(stored, dict) and all(k in stored and holds(stored[k], v) for k, v in stated.items())
    if isinstance(stated, list):
        return isinstance(stored, list) and len(stored) == len(stated) and all(map(holds, stored, stated))
    return stored == stated


def column_value(obj: dict[str, Any], json_path: str) -> Any:
    """The value a printer column's JSONPath (``.a.b``, ``.a[0]``, ``.a[?(@.k=="v")].b``) reaches in ``obj``."""
    value: Any = obj
    for name, index, key, wanted in re.findall(r'\.(\w+)|\[(\d+)\]|\[\?\(@\.(\w+)=="([^"]*)"\)\]', json_path):
        if name:
            value = value.get(name) if isinstance(value, dict) else None
        elif index:
            value = value[int(index)] if isinstance(value, list) and len(value) > int(index) else None
        else:
            value = next((item for item in value or () if item.get(key) == wanted), None)
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_applies_server_side_and_keeps_every_field(
    path, bare: kube.Cluster, control_plane: components.ControlPlane
):
    (body,) = load(path)
    body = placed(body, bare)
    done = subprocess.run(
        [str(components.BIN / "kubectl"), f"--kubeconfig={control_plane.admin_kubeconfig}", "apply",
         "--server-side", f"--field-manager={MANAGER}", "-f", "-"],
        input=json.dumps(body), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    stored = read(bare, BY_KIND[body["kind"]], body["metadata"]["name"])
    assert holds(stored["spec"], body["spec"]), f"the API server changed or pruned the spec: {stored['spec']}"


@pytest.mark.parametrize("kind", resources.KINDS, ids=lambda kind: kind.plural)
def test_the_declared_printer_columns_come_back_in_the_api_servers_table(kind, bare: kube.Cluster):
    body = placed(example(kind), bare)
    name = body["metadata"]["name"]
    create(bare, body)
    status = {"status": STATUS[kind.kind]}
    if kind.namespaced:
        bare.custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, bare.namespace, kind.plural, name, status,
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        table = bare.custom.list_namespaced_custom_object(
            api.GROUP, api.VERSION, bare.namespace, kind.plural, _headers={"Accept": TABLE}
        )
    else:
        bare.custom.patch_cluster_custom_object_status(
            api.GROUP, api.VERSION, kind.plural, name, status, _content_type="application/merge-patch+json"
        )
        table = bare.custom.list_cluster_custom_object(
            api.GROUP, api.VERSION, kind.plural, field_selector=f"metadata.name={name}", _headers={"Accept": TABLE}
        )
    (version,) = load(kube.CRDS / crd.filename(kind))[0]["spec"]["versions"]
    declared = version["additionalPrinterColumns"]
    columns = [(c["name"], c["type"]) for c in table["columnDefinitions"]]
    assert columns == [("Name", "string"), *((c["name"], c["type"]) for c in declared)]

    (row,) = table["rows"]
    stored = read(bare, kind, name)
    *cells, age = row["cells"]
    expected = [name, *(column_value(stored, c["jsonPath"]) for c in declared[:-1])]
    assert None not in expected, f"STATUS[{kind.kind!r}] leaves a column empty: {expected}"
    assert cells == expected
    assert declared[-1]["name"] == "Age" and re.fullmatch(r"\d+s", age), age


def rule_messages(kind: resources.Kind) -> set[str]:
    return {
        rule["message"] for _, node in schemas.nodes(openapi(kind)) for rule in node.get("x-kubernetes-validations", ())
    }


@pytest.mark.parametrize(("spec", "error"), MISTAKES.values(), ids=MISTAKES)
def test_a_typical_mistake_is_refused_by_the_api_server_naming_the_field(spec, error, bare: kube.Cluster):
    field, what = error.split(": ", 1)
    code, message, causes = refusal(bare, placed(make_training_job(**spec), bare))
    if what == "unknown field":
        # Strict field validation refuses it while decoding the body, before any schema check: 400, no causes.
        assert code == 400 and f'unknown field "{field}"' in message, message
        return
    assert code == 422, message
    assert field in {f for f, _ in causes}, causes
    if what in rule_messages(resources.TRAINING_JOB):
        assert any(f == field and what in m for f, m in causes), causes


@pytest.mark.parametrize("kind", WORKLOADS, ids=lambda kind: kind.plural)
def test_a_workload_name_too_long_for_its_pods_labels_is_refused_with_the_limit(kind, bare: kube.Cluster):
    limit = kind.name_limit
    body = placed(example(kind), bare)
    body["metadata"]["name"] = "a" * (limit.length + 1)
    code, message, _ = refusal(bare, body)
    assert code == 422 and limit.message in message, message
    body["metadata"]["name"] = "a" * limit.length
    assert create(bare, body)["metadata"]["name"] == body["metadata"]["name"]
