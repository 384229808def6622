"""The committed CRDs are the models' current translation, structural, and accepted by Kubernetes' own schema.

The example manifests in ``crds/examples/`` validate against them and parse with the models;
typical mistakes are rejected with the field named, by the schema and by its CEL rules, and so
is a workload name too long for the names and labels of its pods.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pydantic
import pytest
from kopf._cogs.structs import references as kopf_references

from archipelago import api, cluster, manifests, queueing
from archipelago.api import common, crd, resources
from archipelago.cluster import devices, ledger, nodes
from tests.support import objects, schemas
from tests.workload_builders import make_job, make_service

CRDS = Path(__file__).resolve().parents[1] / "crds"
EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))
BY_KIND = {kind.kind: kind for kind in resources.KINDS}
WORKLOADS = [kind for kind in resources.KINDS if kind.namespaced]
KUBERNETES_VERSIONS = objects.KUBERNETES_VERSIONS
TAKEN_SHORT_NAMES = {
    # KServe, then core and apps/batch/networking/policy/... resources.
    *("isvc", "inferenceservice", "inferenceservices"),
    *("po", "svc", "deploy", "ds", "rs", "sts", "cm", "ns", "no", "pv", "pvc", "sa", "ep", "ev", "hpa"),
    *("ing", "netpol", "pdb", "pc", "sc", "cs", "csr", "crd", "crds", "rc", "cj", "limits", "quota", "job"),
}


def load(path: Path) -> list[dict[str, Any]]:
    return objects.documents(path.read_text(encoding="utf-8"))


def openapi(kind: resources.Kind) -> dict[str, Any]:
    (version,) = load(CRDS / crd.filename(kind))[0]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def example(kind: resources.Kind) -> dict[str, Any]:
    """The first example manifest of ``kind``."""
    return next(body for path in EXAMPLES for body in load(path) if body["kind"] == kind.kind)


# (a) committed == generated


@pytest.mark.parametrize("kind", resources.KINDS, ids=lambda kind: kind.plural)
def test_the_committed_crd_is_what_the_models_generate_now(kind):
    committed = (CRDS / crd.filename(kind)).read_text(encoding="utf-8")
    assert committed == crd.render(kind), (
        f"crds/{crd.filename(kind)} is stale: run `python -m archipelago.api.crd crds/` and commit the result"
    )


def test_crds_holds_no_generated_file_of_a_kind_that_is_gone():
    generated = {path.name for path in CRDS.glob(f"{api.GROUP}_*.yaml")}
    assert generated == {crd.filename(kind) for kind in resources.KINDS}


def test_writing_the_crds_gives_one_file_per_kind_with_the_header(tmp_path):
    paths = crd.write(tmp_path / "out")
    assert [path.name for path in paths] == [crd.filename(kind) for kind in resources.KINDS]
    assert all(path.read_text().startswith(crd.HEADER) for path in paths)


# (b) structural schemas


@pytest.mark.parametrize("kind", resources.KINDS, ids=lambda kind: kind.plural)
def test_every_schema_is_structural(kind):
    assert schemas.structural_problems(openapi(kind)) == []


def test_the_structural_check_rejects_pydantics_own_schema():
    raw = resources.TrainingJobSpec.model_json_schema(by_alias=True)
    problems = schemas.structural_problems(raw)
    assert any("$ref" in problem for problem in problems)
    assert any("anyOf" in problem for problem in problems)


@pytest.mark.parametrize("kind", resources.KINDS, ids=lambda kind: kind.plural)
def test_every_default_is_plain_json_and_valid_for_its_field(kind):
    for where, node in schemas.nodes(openapi(kind)):
        if "default" in node:
            default = node["default"]
            assert json.loads(json.dumps(default)) == default, where
            assert type(default) in (str, int, bool, list, dict), f"{where}: {default!r}"
            jsonschema.validate(default, node)


def test_a_default_factory_is_stated_so_the_api_server_fills_it():
    spec = crd.schema(resources.AcceleratorPoolSpec)
    assert spec["properties"]["topologyLevels"]["default"] == ["archipelago.dev/spine", "archipelago.dev/island"]
    assert crd.schema(resources.TrainingJobSpec)["properties"]["checkpoint"]["default"] == {}


def test_an_optional_field_is_neither_required_nor_nullable():
    spec = crd.schema(resources.TrainingJobSpec)
    assert "minMember" not in spec["required"]
    assert {"type": "integer", "minimum": 1}.items() <= spec["properties"]["minMember"].items()
    assert "nullable" not in spec["properties"]["minMember"]


def test_a_union_has_no_structural_translation():
    class Either(common.Model):
        value: int | str

    with pytest.raises(ValueError, match="Either.value"):
        crd.schema(Either)


def test_a_list_map_key_that_is_optional_has_no_structural_translation():
    class Item(common.Model):
        name: str | None = None

    class Listing(common.Model):
        items: list[Item] = pydantic.Field(
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
        )

    with pytest.raises(ValueError, match="list-map key 'name'"):
        crd.schema(Listing)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", sorted(CRDS.glob("*.yaml")), ids=lambda path: path.name)
def test_kubernetes_own_schema_accepts_every_crd(path, version):
    for document in load(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_own_schema_rejects_a_misspelled_schema_key():
    document = load(CRDS / crd.filename(resources.TRAINING_JOB))[0]
    spec = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["replicaSets"]["x-kubernetes-list-maps-keys"] = ["name"]
    with pytest.raises(kubernetes_validate.ValidationError, match="x-kubernetes-list-maps-keys"):
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)


# (c) examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_validates_and_parses_with_its_model(path):
    assert path.read_text(encoding="utf-8").startswith("#"), "each example opens with a comment saying what it shows"
    (body,) = load(path)
    kind = BY_KIND[body["kind"]]
    assert schemas.validate(kind.plural, body) == []
    kind.spec.model_validate(body["spec"])


def test_the_examples_show_every_kind():
    assert {load(path)[0]["kind"] for path in EXAMPLES} == set(BY_KIND)


# (d) typical mistakes


def make_training_job(**spec: Any) -> dict[str, Any]:
    """A valid TrainingJob: a launcher without cards and two 8-card workers; ``spec`` replaces fields."""
    body = {
        "apiVersion": "archipelago.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "llama", "namespace": "research"},
        "spec": {
            "replicaSets": [
                {"name": "launcher", "replicas": 1, "cards": {"count": 0}},
                {"name": "worker", "replicas": 2, "cards": {"count": 8}},
            ],
        },
    }
    body["spec"].update(spec)
    return body


def worker(**fields: Any) -> list[dict[str, Any]]:
    """The launcher and a worker replica set with ``fields`` changed."""
    launcher, default_worker = make_training_job()["spec"]["replicaSets"]
    return [launcher, {**default_worker, **fields}]


MISTAKES = {
    "negative replicas": (
        {"replicaSets": worker(replicas=-1)},
        "spec.replicaSets[1].replicas: -1 is less than the minimum of 1",
    ),
    "milli above a card": (
        {"replicaSets": worker(cards={"count": 1, "milli": 1500})},
        "spec.replicaSets[1].cards.milli: 1500 is greater than the maximum of 1000",
    ),
    "a fraction of two cards": (
        {"replicaSets": worker(cards={"count": 2, "milli": 500})},
        "spec.replicaSets[1].cards: a fractional request (milli below 1000) takes exactly one card: set count: 1",
    ),
    "replicas on the job": ({"replicas": 4}, "spec.replicas: unknown field"),
    "a replica set without replicas": (
        {"replicaSets": [{"name": "worker", "cards": {"count": 8}}]},
        "spec.replicaSets[0].replicas: required field is missing",
    ),
    "a word for a number": ({"backoffLimit": "three"}, "spec.backoffLimit: 'three' is not of type 'integer'"),
    "an unknown topology mode": (
        {"topology": {"mode": "Strict"}},
        "spec.topology.mode: 'Strict' is not one of ['Required', 'Preferred']",
    ),
    "minMember above all pods": (
        {"minMember": 4},
        "spec: minMember must not exceed the pods of all replicaSets together",
    ),
}
MODEL_GAPS: dict[str, str] = {}
"""Mistakes the CRD catches but the models do not (an expected failure each, so a fix is noticed)."""


@pytest.mark.parametrize(("spec", "error"), MISTAKES.values(), ids=MISTAKES)
def test_a_typical_mistake_is_rejected_naming_the_field(spec, error):
    assert schemas.validate("trainingjobs", make_training_job(**spec)) == [error]


def model_case(name: str, spec: dict[str, Any]) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=MODEL_GAPS[name])] if name in MODEL_GAPS else []
    return pytest.param(spec, id=name, marks=marks)


@pytest.mark.parametrize("spec", [model_case(name, spec) for name, (spec, _) in MISTAKES.items()])
def test_the_models_reject_the_same_mistakes(spec):
    with pytest.raises(pydantic.ValidationError):
        resources.TrainingJobSpec.model_validate(make_training_job(**spec)["spec"])


ACCEPTED = {
    "minMember equal to all pods": {"minMember": 3},
    "a quarter card": {"replicaSets": worker(replicas=2, cards={"milli": 250})},
    "an omitted milli, defaulted before the CEL rule reads it": {"replicaSets": worker(cards={"count": 4})},
    "null optional fields, pruned": {"pool": None, "minMember": None},
}


@pytest.mark.parametrize("spec", ACCEPTED.values(), ids=ACCEPTED)
def test_a_job_near_the_limits_is_accepted(spec):
    assert schemas.validate("trainingjobs", make_training_job(**spec)) == []


def test_two_replica_sets_of_one_name_are_rejected():
    launcher, _ = worker()
    errors = schemas.validate("trainingjobs", make_training_job(replicaSets=[launcher, {**launcher}]))
    assert errors == ["spec.replicaSets[1]: duplicate entry {'name': 'launcher'}, first at [0]"]


def test_a_missing_spec_and_a_wrong_kind_are_rejected():
    job = make_training_job()
    del job["spec"]
    assert schemas.validate("inferenceservices", job) == [
        "kind: 'TrainingJob' is not 'InferenceService'",
        "spec: required field is missing",
    ]


def test_a_status_write_is_validated_too():
    status = {
        "phase": "Running",
        "conditions": [
            {"type": "Scheduled", "status": "True", "reason": "Placed", "lastTransitionTime": "2025-03-01T10:00:00Z"}
        ],
        "placement": {"pods": 3, "cards": 16, "milliCards": 16000, "nodes": ["h800-0", "h800-1"], "islands": ["b"]},
    }
    assert schemas.validate("trainingjobs", {**make_training_job(), "status": status}) == []
    status["phase"], status["conditions"][0]["lastTransitionTime"] = "Done", "yesterday"
    assert schemas.validate("trainingjobs", {**make_training_job(), "status": status}) == [
        "status.conditions[0].lastTransitionTime: 'yesterday' is not a 'date-time'",
        "status.phase: 'Done' is not one of ['Pending', 'Running', 'Succeeded', 'Failed', 'Suspended']",
    ]


def test_a_pod_template_keeps_any_field_but_metadata_name_is_checked():
    job = make_training_job(replicaSets=worker(template={"spec": {"anything": {"goes": [1, 2]}}}))
    job["metadata"]["name"] = "Llama_70B"
    assert schemas.validate("trainingjobs", job) == [
        "metadata.name: 'Llama_70B' is not a DNS subdomain (lowercase, digits, '-' and '.')"
    ]


@pytest.mark.parametrize("kind", WORKLOADS, ids=lambda kind: kind.plural)
def test_a_workload_name_longer_than_its_pods_allow_is_rejected_naming_the_field(kind):
    limit = kind.name_limit
    body = example(kind)
    body["metadata"]["name"] = "a" * limit.length
    assert schemas.validate(kind.plural, body) == []
    body["metadata"]["name"] = "a" * (limit.length + 1)
    assert schemas.validate(kind.plural, body) == [f"<root>: {limit.message}"]
    assert limit.message.startswith(f"metadata.name must be at most {limit.length} characters: ")


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def named(kind: resources.Kind, body: dict[str, Any], name: str) -> queueing.Workload:
    """The workload of ``body`` under ``name``, past the operator's own check of its length."""
    return dataclasses.replace(queueing.read(kind, {**body, "metadata": {**body["metadata"], "name": "n"}}), name=name)


def last_pod(kind: resources.Kind, name: str) -> dict[str, Any]:
    """The pod of the highest index (and, for a job, the longest role name) the CRD allows, for a workload ``name``."""
    spec = openapi(kind)["properties"]["spec"]["properties"]
    node = cluster.build([nodes.Node("gpu-0", 64_000, 512_000, devices.cards("H800", 8))])
    if kind is resources.TRAINING_JOB:
        replica_set = spec["replicaSets"]["items"]["properties"]
        body = make_job(name, workers=replica_set["replicas"]["maximum"])
        body["spec"]["replicaSets"][-1]["name"] = "r" * replica_set["name"]["maxLength"]
        w = named(kind, body, name)
        gang = queueing.training_gang(w, queueing.Catalogue(), queued_at=0.0)
        template = body["spec"]["replicaSets"][-1]["template"]
    else:
        body = make_service(name, replicas=spec["replicas"]["maximum"], milli=1000)
        w = named(kind, body, name)
        (gang,) = queueing.inference_gangs(w, queueing.Catalogue(), [w.spec.replicas - 1], queued_at=0.0)
        template = body["spec"]["template"]
    pod_set = gang.pod_sets[-1]
    index = pod_set.count - 1
    request = gang.pod(pod_set, index)
    allocation = ledger.Allocation(request.name, 0, 0, 0, ())
    return manifests.pod(
        w, pod_set.role, pod_set.first_index + index, template, allocation, node,
        gang=gang.name, gang_pods=gang.size, started_at="t",
    )  # fmt: skip


def refused_by_kubernetes(pod: dict[str, Any]) -> list[str]:
    """What Kubernetes' pod validation refuses in the pod's name, label values and hostname."""
    meta, problems = pod["metadata"], []
    if len(meta["name"]) > 253 or not _DNS_SUBDOMAIN.match(meta["name"]):
        problems.append(f"name {meta['name']!r}")
    problems += [f"label {k}={v!r}" for k, v in meta["labels"].items() if len(v) > 63 or not _LABEL_VALUE.match(v)]
    hostname = pod["spec"].get("hostname")
    if hostname is not None and (len(hostname) > 63 or not _DNS_SUBDOMAIN.match(hostname) or "." in hostname):
        problems.append(f"hostname {hostname!r}")
    return problems


@pytest.mark.parametrize("kind", WORKLOADS, ids=lambda kind: kind.plural)
def test_the_name_limit_is_the_longest_name_whose_pods_kubernetes_accepts(kind):
    longest = kind.name_limit.length
    assert refused_by_kubernetes(last_pod(kind, "a" * longest)) == []
    assert refused_by_kubernetes(last_pod(kind, "a" * (longest + 1))) != []


def test_a_kind_without_a_crd_is_a_key_error():
    with pytest.raises(KeyError, match="pods"):
        schemas.validate("pods", {"kind": "Pod"})


# (e) names and columns


def column_schema(root: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a printer column's simple JSONPath reaches, or None."""
    node: dict[str, Any] | None = root
    for step in re.sub(r"\[[^\]]*\]", "[]", json_path).strip(".").split("."):
        name, _, index = step.partition("[")
        node = (node or {}).get("properties", {}).get(name)
        if index and node is not None:
            node = node.get("items")
    return node


@pytest.mark.parametrize("kind", resources.KINDS, ids=lambda kind: kind.plural)
def test_every_printer_column_reaches_a_field_of_its_type(kind):
    (version,) = load(CRDS / crd.filename(kind))[0]["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns[:-1]:
        node = column_schema(openapi(kind), column["jsonPath"])
        assert node is not None, column
        assert node["type"] == column["type"], column


def test_short_names_are_ours_alone():
    names = [name for kind in resources.KINDS for name in (*kind.short_names, kind.singular, kind.plural)]
    assert len(names) == len(set(names))
    short = {name for kind in resources.KINDS for name in kind.short_names}
    assert short and not short & TAKEN_SHORT_NAMES
    for kind in resources.KINDS:
        names = load(CRDS / crd.filename(kind))[0]["spec"]["names"]
        assert names["shortNames"] == list(kind.short_names)
        assert names["categories"] == ["archipelago"]


# (f) kopf peering


def test_kopf_peering_holds_the_two_crds_kopf_watches():
    documents = {doc["metadata"]["name"]: doc for doc in load(CRDS / "kopf-peering.yaml")}
    for selector, scope in (
        (kopf_references.CLUSTER_PEERINGS_K, "Cluster"),
        (kopf_references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ):
        spec = documents[f"{selector.any_name}.{selector.group}"]["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["plural"]) == (selector.group, scope, selector.any_name)
        assert [version["name"] for version in spec["versions"]] == [selector.version]
    keepalive = {"status": {"archipelago@host/1": {"priority": 0, "lifetime": 60, "lastseen": "2025-03-01T10:00:00"}}}
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "archipelago"}}
    assert schemas.validate("clusterkopfpeerings", {**peering, **keepalive}) == []
