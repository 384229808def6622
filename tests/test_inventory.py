"""The inventory: Node objects read into the cluster model, and the ledger rebuilt from pod annotations."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from archipelago import inventory
from archipelago.api import labels
from archipelago.cluster import devices
from archipelago.cluster import ledger as ledger_
from archipelago.inventory import nodes, pods, quantities
from archipelago.placement import fit
from tests.builders import make_cluster, make_ledger, make_node
from tests.inventory_builders import (
    NPU,
    make_allocation,
    make_link_rule,
    make_node_body,
    make_pod_body,
    make_pool,
)

GIB = 1024
ASCEND_POOL = make_pool(
    kind="NPU",
    resource=NPU,
    link_rules=[make_link_rule(model="Ascend910B", group_size=4, strict=True, pod_sizes=(1, 2, 4, 8), large_pod=8)],
)


def read(body, pool=None):
    return nodes.node(body, "gpu", pool or make_pool())


# Quantities.


@pytest.mark.parametrize(("text", "milli"), [("64", 64_000), ("63500m", 63_500), ("2k", 2_000_000), ("0.5", 500)])
def test_cpu_quantities_become_milli_cores(text, milli):
    assert quantities.cpu_milli(text) == milli


@pytest.mark.parametrize(
    ("text", "mib"), [("512Gi", 512 * GIB), ("1000Mi", 1000), ("1e9", 953), ("128974848", 123), ("1G", 953)]
)
def test_memory_quantities_become_whole_mib_rounded_down(text, mib):
    assert quantities.mebibytes(text) == mib


@pytest.mark.parametrize("text", ["", "abc", "1Q", "1.2.3", "Gi", "-1", None])
def test_a_malformed_or_negative_quantity_raises_value_error(text):
    with pytest.raises(ValueError):
        quantities.mebibytes(text)


# Nodes.


def test_a_gfd_h800_node_has_80_gib_cards_in_one_nvlink_group_of_8():
    reading = read(make_node_body(product="NVIDIA-H800", cards=8))
    node = reading.node
    assert reading.usable and not reading.problems
    assert (node.model, node.card_count, node.kind) == ("H800", 8, devices.DeviceKind.GPU)
    assert {d.memory_mib for d in node.devices} == {80 * GIB}
    assert [d.link_group for d in node.devices] == [0] * 8
    assert fit.links(node).fabric is devices.Fabric.NVLINK and node.links is None


@pytest.mark.parametrize(
    ("product", "model"),
    [
        ("NVIDIA-A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("A100-SXM4-40GB", "A100-SXM4-40GB"),
        ("Tesla-V100-SXM2-32GB", "V100M32"),
        ("NVIDIA-H100-80GB-HBM3", "H100-SXM5-80GB"),
        ("Tesla-T4-SHARED", "T4"),
        ("NVIDIA-H800-PCIe", "NVIDIA-H800-PCIe"),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
    ],
)
def test_gfd_products_map_onto_catalogue_models_or_stay_verbatim(product, model):
    assert read(make_node_body(product=product)).node.model == model


def test_the_gfd_memory_label_gives_device_memory_and_a_bad_one_falls_back_to_the_catalogue():
    assert read(make_node_body(product="NVIDIA-H800", gpu_memory="81559")).node.devices[0].memory_mib == 81559
    reading = read(make_node_body(product="NVIDIA-H800", gpu_memory="80GB"))
    assert reading.node.devices[0].memory_mib == 80 * GIB
    assert any("nvidia.com/gpu.memory" in p and "n1" in p for p in reading.problems)


def test_an_ascend_910b_node_takes_the_pools_rings_of_4_as_strict_link_rules():
    body = make_node_body(resource=NPU, cards=8, accelerator="huawei-Ascend910", accelerator_type="module-910b-8")
    node = nodes.node(body, "npu", ASCEND_POOL).node
    assert (node.model, node.kind, node.devices[0].resource) == ("Ascend910B", devices.DeviceKind.NPU, NPU)
    assert [d.link_group for d in node.devices] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert node.links == devices.LinkTopology(devices.Fabric.HCCS, 4, True, frozenset({1, 2, 4, 8}), 8)
    assert fit.links(node).admits(cards=3, gang_cards=3, node_cards=8) is not None


@pytest.mark.parametrize(
    ("accelerator_type", "cards", "model", "groups"),
    [
        (None, 8, "Ascend910", [0, 0, 0, 0, 1, 1, 1, 1]),
        ("half", 4, "Ascend910", [0, 0, 0, 0]),
        ("module-a3-16", 16, "Ascend910C", [0] * 8 + [1] * 8),
        ("card-910b-2", 2, "Ascend910B", [0, 1]),
    ],
)
def test_ascend_server_forms_name_the_model_and_pcie_cards_have_no_link_groups(accelerator_type, cards, model, groups):
    body = make_node_body(resource=NPU, cards=cards, accelerator="huawei-Ascend910", accelerator_type=accelerator_type)
    node = nodes.node(body, "npu", make_pool(kind="NPU", resource=NPU)).node
    assert (node.model, [d.link_group for d in node.devices]) == (model, groups)


def test_an_unknown_ascend_form_is_reported_and_the_pool_device_model_used():
    body = make_node_body(resource=NPU, accelerator="huawei-Ascend910", accelerator_type="module-9000")
    reading = nodes.node(body, "npu", make_pool(kind="NPU", resource=NPU, device_model="Ascend910B"))
    assert reading.node.model == "Ascend910B"
    assert any("accelerator-type=module-9000" in p for p in reading.problems)


def test_the_pool_device_model_names_cards_no_label_names_and_the_model_label_overrides_gfd():
    assert read(make_node_body(), make_pool(device_model="A10")).node.devices[0].memory_mib == 24 * GIB
    assert read(make_node_body(product="NVIDIA-H800", device_model="H100-SXM5-80GB")).node.model == "H100-SXM5-80GB"
    unnamed = read(make_node_body())
    assert unnamed.node.model == nodes.UNKNOWN_MODEL
    assert any(labels.DEVICE_MODEL in p for p in unnamed.problems)


def test_a_node_without_the_pool_resource_is_a_cpu_only_node():
    reading = read(make_node_body(cards=None, cpu="63500m", memory="1000Mi"))
    assert reading.usable and not reading.problems
    assert (reading.node.card_count, reading.node.cpu_milli, reading.node.memory_mib) == (0, 63_500, 1000)


def test_gfd_gpu_count_is_the_fallback_count_and_is_reported():
    reading = read(make_node_body(cards=None, product="NVIDIA-H800", gpu_count="4"))
    assert reading.node.card_count == 4
    assert any("device plugin" in p for p in reading.problems)


def test_a_cordoned_node_carries_the_unschedulable_taint_besides_its_own():
    taints = [{"key": "dedicated", "value": "train", "effect": "NoSchedule"}, {"key": "x", "effect": "Sometimes"}]
    reading = read(make_node_body(unschedulable=True, taints=taints))
    assert [(t.key, t.effect) for t in reading.node.taints] == [
        ("dedicated", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    assert any("Sometimes" in p for p in reading.problems)


def test_a_taint_dedicating_the_node_to_archipelago_does_not_repel_its_own_pods():
    taints = [
        {"key": "archipelago.dev/dedicated", "value": "true", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "train", "effect": "NoSchedule"},
    ]
    reading = read(make_node_body(taints=taints))
    assert [t.key for t in reading.node.taints] == ["dedicated"]


def test_unhealthy_cards_come_from_the_label_and_the_annotation_and_bad_indices_are_reported():
    reading = read(make_node_body(cards=8, unhealthy_label="1.3", unhealthy_annotation="5, 9, x"))
    assert [d.index for d in reading.node.devices if not d.healthy] == [1, 3, 5]
    assert reading.node.capacity_milli == 5000
    assert sum("unhealthy-cards" in p for p in reading.problems) == 2


def test_cards_the_device_plugin_holds_back_without_a_label_are_pointed_out():
    reading = read(make_node_body(cards=8, allocatable_cards=7))
    assert reading.node.card_count == 8
    assert any("marks 1 of 8" in p for p in reading.problems)


@pytest.mark.parametrize("field", ["cpu", "memory"])
def test_an_unreadable_allocatable_quantity_leaves_the_node_out_and_says_so(field):
    reading = read(make_node_body(**{field: "lots"}))
    assert reading.node is None and not reading.usable
    assert any(f"status.allocatable.{field}" in p for p in reading.problems)


# The cluster.


def test_not_ready_and_unknown_nodes_are_lost_not_in_the_cluster():
    bodies = [
        make_node_body(name="a"),
        make_node_body(name="b", ready=False),
        make_node_body(name="c", ready="Unknown"),
    ]
    found = inventory.cluster(bodies, {"gpu": make_pool()})
    assert [n.name for n in found.cluster.nodes] == ["a"]
    assert found.lost == ("b", "c")
    assert found.pools["gpu"].lost == ("b", "c") and found.pools["gpu"].nodes == 1


def test_a_node_not_ready_for_less_than_the_grace_keeps_its_pods_but_takes_no_new_ones():
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    bodies = [
        make_node_body(name="blip", ready=False, ready_since="2027-01-15T07:59:50Z"),
        make_node_body(name="silent", ready="Unknown", ready_since="2027-01-15T07:59:00Z"),
        make_node_body(name="gone", ready=False, ready_since="2027-01-15T07:54:59Z"),
    ]
    found = inventory.cluster(bodies, {"gpu": make_pool()}, now=now, lost_after_s=300)
    assert [n.name for n in found.cluster.nodes] == ["blip", "silent"]
    assert found.lost == ("gone",), "lost only after 300 s, as the node lifecycle controller evicts"
    taints = {n.name: n.taints for n in found.cluster.nodes}
    assert taints["blip"] == (nodes.NOT_READY,)
    assert taints["silent"] == (nodes.UNREACHABLE,)
    assert found.pools["gpu"].nodes == 0, "a node that is not Ready offers no cards meanwhile"
    assert found.not_ready_until == now - 60 + 300, "the first grace to end: silent's"


def test_a_node_matching_no_pool_is_not_in_the_cluster_and_two_matching_pools_are_reported():
    pools = {"b-pool": make_pool(selector={"zone": "x"}), "a-pool": make_pool(selector={"rack": "1"})}
    bodies = [
        make_node_body(name="both", product="NVIDIA-H800", labels={"zone": "x", "rack": "1"}),
        make_node_body(name="stray", product="NVIDIA-H800", labels={"zone": "y"}),
    ]
    found = inventory.cluster(bodies, pools)
    assert [(n.name, n.pool) for n in found.cluster.nodes] == [("both", "a-pool")]
    assert nodes.pool_of(bodies[1], pools) is None
    assert found.problems == (
        "node both: matched by pools a-pool, b-pool; it joins a-pool (the first by name): "
        "make the pools' nodeSelectors disjoint",
    )


def test_pools_with_different_levels_use_the_first_pools_and_say_so():
    pools = {"a": make_pool(selector={"p": "a"}, levels=["rack"]), "b": make_pool(selector={"p": "b"})}
    found = inventory.cluster([make_node_body(labels={"p": "b", "rack": "r1"})], pools)
    assert found.cluster.topology.levels == ("rack",)
    assert any("topologyLevels" in p for p in found.problems)


def test_pool_facts_count_ready_nodes_and_healthy_cards_per_model():
    bodies = [
        make_node_body(name="h1", product="NVIDIA-H800", unhealthy_label="0"),
        make_node_body(name="h2", product="NVIDIA-H800"),
        make_node_body(name="a1", product="NVIDIA-A10", cards=4),
        make_node_body(name="down", product="NVIDIA-H800", ready=False),
        make_node_body(name="dup", cards=2),
        make_node_body(name="dup", cards=2),
    ]
    found = inventory.cluster(bodies, {"gpu": make_pool(device_model="A10"), "empty": make_pool(selector={"no": "1"})})
    assert found.pools["gpu"] == inventory.PoolFacts(nodes=4, cards=21, models={"A10": 6, "H800": 15}, lost=("down",))
    assert found.pools["empty"] == inventory.PoolFacts()
    assert "node dup: listed twice; the second is ignored" in found.problems


# Pod annotations.


@pytest.mark.parametrize(
    "allocation",
    [
        make_allocation(cards=[4, 5, 6, 7], device_memory_mib=80 * GIB),
        make_allocation(cards=[2], milli=250, device_memory_mib=10 * GIB),
        make_allocation(cards=[0, 1], milli=[500, 1000], device_memory_mib=[0, 4096]),
        make_allocation(cpu_milli=500, memory_mib=256),
    ],
    ids=["whole cards", "fractional", "mixed shares", "cpu only"],
)
def test_annotations_round_trip_exactly(allocation):
    cluster = make_cluster(make_node(name="n1"))
    assert pods.allocation(make_pod_body(allocation=allocation), cluster) == (allocation, None)


@st.composite
def allocations(draw):
    """Any allocation on an 8-card node: distinct cards in any order, each with its own share."""
    cards = draw(st.lists(st.integers(0, 7), unique=True, max_size=8))
    return make_allocation(
        cards=cards,
        milli=draw(st.lists(st.integers(1, 1000), min_size=len(cards), max_size=len(cards))),
        device_memory_mib=draw(st.lists(st.integers(0, 80 * GIB), min_size=len(cards), max_size=len(cards))),
        cpu_milli=draw(st.integers(0, 128_000)),
        memory_mib=draw(st.integers(0, 1024 * GIB)),
    )


@settings(max_examples=60, deadline=None)
@given(allocation=allocations())
def test_any_allocation_round_trips_through_annotations(allocation):
    cluster = make_cluster(make_node(name="n1"))
    assert pods.allocation(make_pod_body(allocation=allocation), cluster) == (allocation, None)


def test_annotations_refuse_an_allocation_that_could_not_be_read_back():
    cluster = make_cluster(make_node(name="n1", cards=4))
    with pytest.raises(ValueError, match="not on node n1"):
        pods.annotations(make_allocation(cards=[4]), cluster)
    with pytest.raises(ValueError, match="not in the cluster"):
        pods.annotations(make_allocation(node=1), cluster)


def test_visible_devices_name_the_cards_for_each_runtime():
    gpu, npu = make_node(model="H800"), make_node(model="Ascend910B")
    assert pods.visible_devices(make_allocation(cards=[1, 3]), gpu) == {"NVIDIA_VISIBLE_DEVICES": "1,3"}
    assert pods.visible_devices(make_allocation(), gpu) == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert pods.visible_devices(make_allocation(cards=[0, 1]), npu) == {"ASCEND_VISIBLE_DEVICES": "0,1"}
    assert pods.visible_devices(make_allocation(), npu) == {}


# The rebuilt ledger.


def two_node_cluster():
    return make_cluster(make_node(name="n1", cards=8), make_node(name="n2", cards=8))


def observable(ledger: ledger_.Ledger) -> tuple:
    return (
        ledger.cpu_free,
        ledger.memory_free,
        ledger.card_free,
        ledger.card_memory_free,
        ledger.allocated_milli,
        sorted(ledger.allocations(), key=lambda a: a.pod),
    )


def test_the_rebuilt_ledger_equals_the_ledger_that_made_the_allocations():
    cluster = two_node_cluster()
    made = make_ledger(cluster)
    placed = [
        make_allocation(pod="default/train-0", node=0, cards=[0, 1, 2, 3], device_memory_mib=0),
        make_allocation(pod="default/serve-0", node=0, cards=[4], milli=250, device_memory_mib=20 * GIB),
        make_allocation(pod="default/serve-1", node=0, cards=[4], milli=500, device_memory_mib=40 * GIB),
        make_allocation(pod="default/launcher", node=1, cpu_milli=2000),
    ]
    for a in placed:
        made.allocate(a)
    bodies = [
        make_pod_body(name=a.pod.split("/")[1], node=cluster.nodes[a.node].name, allocation=a) for a in reversed(placed)
    ]
    rebuilt = inventory.ledger(cluster, bodies)
    assert observable(rebuilt.ledger) == observable(made)
    assert (rebuilt.lost, rebuilt.conflicts, rebuilt.problems, rebuilt.foreign) == ((), (), (), ())


def test_pods_on_lost_nodes_are_reported_and_not_applied():
    bodies = [make_pod_body(name="gone", node="n9", allocation=make_allocation(pod="default/gone", cards=[0]))]
    rebuilt = pods.ledger(two_node_cluster(), bodies)
    assert rebuilt.lost == ("default/gone",) and len(rebuilt.ledger) == 0


def test_a_double_booked_pod_is_a_conflict_and_the_older_pod_keeps_the_card():
    older = make_pod_body(
        name="a", created="2024-05-01T08:00:00Z", allocation=make_allocation(pod="default/a", cards=[0])
    )
    newer = make_pod_body(
        name="b", created="2024-05-01T09:00:00Z", allocation=make_allocation(pod="default/b", cards=[0])
    )
    rebuilt = pods.ledger(two_node_cluster(), [newer, older])
    assert [a.pod for a in rebuilt.ledger.allocations()] == ["default/a"]
    assert [(c.pod, c.node) for c in rebuilt.conflicts] == [("default/b", "n1")]
    assert str(rebuilt.conflicts[0]) == (
        "pod default/b: needs 1000 milli of card 0, 0 free on node n1; the pod is not in the ledger: evict it"
    )
    assert rebuilt.ledger.card_free[0][0] == 0 and rebuilt.ledger.allocated_milli == 1000


def test_terminated_pods_hold_nothing_and_pods_being_deleted_still_hold_their_cards():
    bodies = [
        make_pod_body(name="done", phase="Succeeded", allocation=make_allocation(pod="default/done", cards=[0])),
        make_pod_body(name="crashed", phase="Failed", allocation=make_allocation(pod="default/crashed", cards=[0])),
        make_pod_body(name="leaving", deleting=True, allocation=make_allocation(pod="default/leaving", cards=[1])),
    ]
    rebuilt = pods.ledger(two_node_cluster(), bodies)
    assert [a.pod for a in rebuilt.ledger.allocations()] == ["default/leaving"]
    assert pods.allocation(bodies[0], two_node_cluster()) == (None, None)


@pytest.mark.parametrize(
    "annotations",
    [
        {labels.POD_CARDS: "0,x"},
        {labels.POD_CARDS: "0,0"},
        {labels.POD_CARDS: "12"},
        {labels.POD_MILLI: "0"},
        {labels.POD_MILLI: "500,500,500"},
        {labels.POD_DEVICE_MEMORY: "-1"},
        {labels.POD_CPU: ""},
        {labels.POD_MEMORY: "1Gi"},
        {labels.POD_CARDS: "", labels.POD_MILLI: "1000"},
    ],
)
def test_malformed_annotations_are_reported_not_raised(annotations):
    body = make_pod_body(allocation=make_allocation(cards=[0, 1]), annotations=annotations)
    rebuilt = pods.ledger(two_node_cluster(), [body])
    assert len(rebuilt.ledger) == 0
    assert len(rebuilt.problems) == 1 and rebuilt.problems[0].startswith("pod default/p0: annotation")


def test_a_pod_with_our_annotations_but_no_node_is_a_problem():
    body = make_pod_body(node=None, allocation=make_allocation(cards=[0]))
    assert pods.ledger(two_node_cluster(), [body]).problems == (
        "pod default/p0: carries allocation annotations but no spec.nodeName; delete it to reschedule",
    )


def test_pods_not_ours_are_ignored_but_foreign_card_users_are_reported():
    bodies = [
        make_pod_body(name="daemon", requests={"cpu": "100m"}),
        make_pod_body(name="rogue", requests={"nvidia.com/gpu": "2"}),
        make_pod_body(name="elsewhere", node="n9", requests={"nvidia.com/gpu": "1"}),
    ]
    rebuilt = pods.ledger(two_node_cluster(), bodies)
    assert rebuilt.foreign == ("default/rogue",)
    assert (len(rebuilt.ledger), rebuilt.lost, rebuilt.problems) == (0, (), ())
