"""The cluster model: cards, nodes, taints, topology, the cluster itself, and pod requests."""

from __future__ import annotations

import dataclasses

import pytest

from archipelago import workload
from archipelago.cluster import devices, nodes, topology
from tests.builders import make_cluster, make_node, make_pod

# --- cards -------------------------------------------------------------------------------


def test_ascend910_cards_form_two_hccs_rings_of_four():
    cards = devices.cards("Ascend910", 8)
    assert [c.link_group for c in cards] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(c.kind == devices.DeviceKind.NPU and c.resource == "huawei.com/Ascend910" for c in cards)


def test_h800_cards_share_one_nvlink_group():
    cards = devices.cards("H800", 8)
    assert {c.link_group for c in cards} == {0}
    assert {c.memory_mib for c in cards} == {80 * 1024}


def test_unknown_model_is_a_pcie_gpu_with_no_memory():
    cards = devices.cards("G2", 3)
    assert [c.memory_mib for c in cards] == [0, 0, 0]
    assert [c.link_group for c in cards] == [0, 1, 2]  # PCIe only: every card its own group
    assert {c.model for c in cards} == {"G2"}
    assert {c.resource for c in cards} == {"nvidia.com/gpu"}


def test_cards_are_numbered_from_zero_and_marked_unhealthy_by_index():
    cards = devices.cards("A10", 4, unhealthy=frozenset({1, 3}))
    assert [c.index for c in cards] == [0, 1, 2, 3]
    assert [c.healthy for c in cards] == [True, False, True, False]


def test_negative_card_count_is_refused():
    with pytest.raises(ValueError, match="negative"):
        devices.cards("H800", -1)


def test_link_group_size_must_be_positive():
    with pytest.raises(ValueError, match="group_size"):
        devices.LinkTopology(devices.Fabric.PCIE, group_size=0)


# --- nodes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cpu_milli": -1}, "cpu_milli"),
        ({"memory_mib": -1}, "memory_mib"),
    ],
)
def test_node_with_negative_capacity_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        make_node(name="bad", **fields)


def test_node_with_mixed_card_models_is_refused():
    mixed = devices.cards("H800", 1) + devices.cards("A10", 2)[1:]  # indices 0, 1
    with pytest.raises(ValueError, match="one model"):
        nodes.Node(name="mixed", cpu_milli=1, memory_mib=1, devices=mixed)


@pytest.mark.parametrize(
    "indices",
    [[1, 2], [0, 0], [1, 0], [0, 2]],
    ids=["not-from-zero", "duplicated", "out-of-order", "gap"],
)
def test_node_with_card_indices_other_than_0_to_n_is_refused(indices):
    template = devices.cards("H800", 1)[0]
    cards = tuple(dataclasses.replace(template, index=i) for i in indices)
    with pytest.raises(ValueError, match="indices"):
        nodes.Node(name="bad", cpu_milli=1, memory_mib=1, devices=cards)


def test_node_reports_its_model_kind_and_card_count():
    node = make_node(cards=8, model="Ascend910B")
    assert (node.model, node.kind, node.card_count) == ("Ascend910B", devices.DeviceKind.NPU, 8)


def test_node_without_cards_has_no_model():
    node = make_node(cards=0)
    assert (node.model, node.kind, node.card_count) == (None, None, 0)


def test_node_labels_cannot_be_changed_after_construction():
    node = make_node(labels={"zone": "a"})
    with pytest.raises(TypeError):
        node.labels["zone"] = "b"  # type: ignore[index]


# --- taints and tolerations --------------------------------------------------------------

GPU_TAINT = nodes.Taint(key="gpu", value="h800", effect="NoSchedule")


@pytest.mark.parametrize(
    "toleration, tolerated",
    [
        (nodes.Toleration(key="gpu", operator="Equal", value="h800"), True),
        (nodes.Toleration(key="gpu", operator="Equal", value="a10"), False),
        (nodes.Toleration(key="gpu", operator="Equal"), False),
        (nodes.Toleration(key="gpu", operator="Exists"), True),
        (nodes.Toleration(key="other", operator="Exists"), False),
        (nodes.Toleration(operator="Exists"), True),
        (nodes.Toleration(operator="Equal"), False),
        (nodes.Toleration(key="gpu", operator="Exists", effect="NoSchedule"), True),
        (nodes.Toleration(key="gpu", operator="Exists", effect="NoExecute"), False),
        (nodes.Toleration(operator="Exists", effect="NoExecute"), False),
    ],
    ids=[
        "equal-same-value",
        "equal-other-value",
        "equal-empty-value",
        "exists-same-key",
        "exists-other-key",
        "empty-key-exists-matches-all",
        "empty-key-equal-matches-nothing",
        "same-effect",
        "other-effect",
        "empty-key-exists-other-effect",
    ],
)
def test_toleration_matches_taint_with_kubernetes_semantics(toleration, tolerated):
    assert toleration.tolerates(GPU_TAINT) is tolerated
    assert nodes.tolerated((GPU_TAINT,), (toleration,)) is tolerated


def test_toleration_with_empty_effect_matches_every_effect():
    toleration = nodes.Toleration(key="gpu", operator="Exists")
    for effect in ("NoSchedule", "NoExecute", "PreferNoSchedule"):
        assert toleration.tolerates(nodes.Taint(key="gpu", effect=effect))


def test_prefer_no_schedule_taint_does_not_repel():
    assert nodes.tolerated((nodes.Taint(key="spot", effect="PreferNoSchedule"),), ())


@pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute"])
def test_no_schedule_and_no_execute_taints_repel_untolerating_pods(effect):
    assert not nodes.tolerated((nodes.Taint(key="spot", effect=effect),), ())


def test_every_repelling_taint_needs_its_own_toleration():
    taints = (nodes.Taint(key="a"), nodes.Taint(key="b"))
    assert not nodes.tolerated(taints, (nodes.Toleration(key="a", operator="Exists"),))
    both = (nodes.Toleration(key="a", operator="Exists"), nodes.Toleration(key="b", operator="Exists"))
    assert nodes.tolerated(taints, both)


def test_node_selector_needs_every_pair_and_nothing_else():
    labels = {"zone": "a", "pool": "train"}
    assert nodes.selected(labels, {})
    assert nodes.selected(labels, {"zone": "a"})
    assert nodes.selected(labels, {"zone": "a", "pool": "train"})
    assert not nodes.selected(labels, {"zone": "b"})
    assert not nodes.selected(labels, {"zone": "a", "rack": "1"})


# --- topology ----------------------------------------------------------------------------


def test_node_path_runs_from_spine_to_island_to_node():
    cluster = make_cluster(make_node(name="n0", spine="s1", island="b"))
    assert cluster.path(0) == ("s1", "b", "n0")


def test_unlabelled_node_is_its_own_island():
    cluster = make_cluster(make_node(name="a"), make_node(name="b"))
    islands = cluster.domains(topology.ISLAND)
    assert sorted(islands.values()) == [[0], [1]]


def test_nodes_with_the_same_spine_and_island_share_one_island():
    cluster = make_cluster(
        make_node(name="a", spine="s1", island="x"),
        make_node(name="b", spine="s1", island="y"),
        make_node(name="c", spine="s1", island="x"),
        make_node(name="d", spine="s2", island="x"),
    )
    assert cluster.domains(topology.ISLAND) == {("s1", "x"): [0, 2], ("s1", "y"): [1], ("s2", "x"): [3]}
    assert cluster.domains(topology.SPINE) == {("s1",): [0, 1, 2], ("s2",): [3]}
    assert cluster.domains(topology.HOSTNAME) == {cluster.path(i): [i] for i in range(4)}


def test_nodes_missing_only_the_coarser_label_still_share_their_island():
    cluster = make_cluster(make_node(name="a", island="x"), make_node(name="b", island="x"))
    assert list(cluster.domains(topology.ISLAND).values()) == [[0, 1]]


def test_nodes_missing_the_finest_label_are_islands_of_their_own():
    cluster = make_cluster(make_node(name="a", spine="s"), make_node(name="b", spine="s"))
    assert len(cluster.domains(topology.ISLAND)) == 2
    assert len(cluster.domains(topology.SPINE)) == 1


def test_single_level_topology_groups_by_island_label_alone():
    cluster = make_cluster(make_node(name="a", island="x"), make_node(name="b", island="x"), levels=(topology.ISLAND,))
    assert cluster.domains(topology.ISLAND) == {("x",): [0, 1]}
    assert cluster.topology.domain(cluster.nodes[1], topology.ISLAND) == ("x",)


def test_unknown_topology_level_is_refused():
    with pytest.raises(ValueError, match="unknown topology level"):
        make_cluster(make_node()).domains("rack")


def test_repeated_topology_level_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        topology.Topology((topology.ISLAND, topology.ISLAND))


# --- cluster -----------------------------------------------------------------------------


def test_cluster_refuses_duplicate_node_names():
    with pytest.raises(ValueError, match="duplicate node names.*'n1'"):
        make_cluster(make_node(name="n0"), make_node(name="n1"), make_node(name="n1"))


def test_cluster_maps_names_to_positions():
    cluster = make_cluster(make_node(name="x"), make_node(name="y"))
    assert (cluster.index_of("x"), cluster.index_of("y"), len(cluster)) == (0, 1, 2)
    with pytest.raises(KeyError):
        cluster.index_of("z")


def test_cluster_counts_cards_and_lists_models_sorted():
    cluster = make_cluster(
        make_node(name="a", cards=8, model="H800"),
        make_node(name="b", cards=4, model="A10"),
        make_node(name="c", cards=0),
        make_node(name="d", cards=2, model="H800", unhealthy=[0]),
    )
    assert cluster.total_cards == 14
    assert cluster.models() == ["A10", "H800"]


# --- pod requests ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["cpu_milli", "memory_mib", "cards", "milli_per_card", "device_memory_mib"])
def test_pod_request_refuses_a_negative_value_naming_the_field(field):
    with pytest.raises(ValueError, match=field):
        workload.PodRequest(name="p", **{field: -1})


def test_pod_request_refuses_a_share_above_one_card():
    with pytest.raises(ValueError, match="milli_per_card"):
        make_pod(cards=1, milli=1001)


@pytest.mark.parametrize("field", ["milli_per_card", "device_memory_mib"])
def test_pod_request_refuses_a_share_without_cards(field):
    with pytest.raises(ValueError, match=field):
        workload.PodRequest(name="p", cards=0, **{field: 100})


def test_pod_request_without_a_share_takes_whole_cards():
    pod = make_pod(cards=4)
    assert (pod.milli_per_card, pod.milli, pod.sharing) == (1000, 4000, False)


def test_one_card_below_a_whole_card_is_a_sharing_pod():
    assert make_pod(cards=1, milli=500).sharing
    assert not make_pod(cards=2, milli=500).sharing
    assert not make_pod(cards=1, milli=1000).sharing
    assert not make_pod(cards=0).sharing


def test_pods_differing_only_in_name_and_priority_share_a_fit_key():
    a = make_pod(name="a", cards=2, models={"H800"}, priority=1)
    b = make_pod(name="b", cards=2, models={"H800"}, priority=9)
    assert a.fit_key == b.fit_key
    assert a.fit_key != make_pod(name="c", cards=2, models={"A10"}).fit_key
    assert a.fit_key != make_pod(name="d", cards=2, models={"H800"}, node_selector={"z": "1"}).fit_key


def test_gang_needs_min_member_between_what_its_pod_sets_keep_and_its_size():
    launcher = workload.PodSet("launcher", 1, make_pod(name="l"))
    workers = workload.PodSet("worker", 4, make_pod(name="w", cards=8))
    assert workload.Gang("g", (launcher, workers)).min_member == 5
    elastic = workload.Gang("g", (launcher, workers), min_member=3)
    assert elastic.elastic and elastic.lower_bounds() == (1, 2)
    for bad in (0, 6):
        with pytest.raises(ValueError, match="min_member"):
            workload.Gang("g", (launcher, workers), min_member=bad)


def test_gang_pods_are_named_after_gang_role_and_index_and_carry_its_priority():
    gang = workload.Gang("job", (workload.PodSet("worker", 2, make_pod(cards=4)),), priority=7)
    assert [(p.name, p.gang, p.role, p.priority) for p in gang.pods()] == [
        ("job-worker-0", "job", "worker", 7),
        ("job-worker-1", "job", "worker", 7),
    ]
    assert gang.cards == 8 and gang.milli == 8000


def test_ascend_rings_admit_one_two_four_or_eight_cards_and_eight_per_pod_beyond_a_server():
    rules = devices.model("Ascend910").links
    assert [rules.admits(n, n, 8) is None for n in (1, 2, 3, 4, 8)] == [True, True, False, True, True]
    assert rules.admits(8, 64, 8) is None
    assert "8 cards per pod" in rules.admits(4, 16, 8)


# --- typical tasks -----------------------------------------------------------------------


def _pods(*shapes_and_counts: tuple[dict, int]) -> list[workload.PodRequest]:
    pods = []
    for fields, count in shapes_and_counts:
        pods += [make_pod(name=f"p{len(pods) + k}", **fields) for k in range(count)]
    return pods


def _shape(task: workload.TypicalTask) -> tuple:
    return (task.cpu_milli, task.milli_per_card, task.cards)


def test_typical_tasks_stop_at_the_first_shape_reaching_the_coverage():
    pods = _pods(
        ({"cards": 1, "cpu_milli": 1000}, 10),
        ({"cards": 2, "cpu_milli": 1000}, 5),
        ({"cards": 1, "milli": 500, "cpu_milli": 1000}, 3),
        ({"cards": 0, "cpu_milli": 4000}, 2),
    )
    # 10 + 5 = 15 of 20 tasks reaches 75% exactly; 15 of 20 is below 80%.
    assert [_shape(t) for t in workload.typical_tasks(pods, coverage=0.75)] == [(1000, 1000, 1), (1000, 1000, 2)]
    assert len(workload.typical_tasks(pods, coverage=0.8)) == 3
    assert len(workload.typical_tasks(pods, coverage=1.0)) == 4


def test_typical_task_weights_are_renormalised_to_sum_to_one():
    pods = _pods(({"cards": 1}, 10), ({"cards": 2}, 5), ({"cards": 4}, 1))
    tasks = workload.typical_tasks(pods, coverage=0.9)
    # 15 of 16 tasks cover 93.75%: the 4-card shape is cut, and 10/15 + 5/15 remain.
    assert [t.weight for t in tasks] == pytest.approx([10 / 15, 5 / 15])
    assert sum(t.weight for t in tasks) == pytest.approx(1.0)


def test_typical_tasks_count_cpu_only_tasks_and_ignore_memory():
    pods = _pods(({"cards": 0, "memory_mib": 1}, 3), ({"cards": 0, "memory_mib": 999}, 3), ({"cards": 1}, 2))
    tasks = workload.typical_tasks(pods, coverage=1.0)
    assert [(_shape(t), t.weight) for t in tasks] == [((1000, 0, 0), 0.75), ((1000, 1000, 1), 0.25)]


def test_typical_tasks_with_equal_counts_put_larger_card_demand_then_larger_cpu_first():
    pods = _pods(
        ({"cards": 0, "cpu_milli": 8000}, 2),
        ({"cards": 1, "milli": 500, "cpu_milli": 1000}, 2),
        ({"cards": 1, "milli": 500, "cpu_milli": 4000}, 2),
        ({"cards": 2, "cpu_milli": 1000}, 2),
        ({"cards": 1, "cpu_milli": 1000}, 3),
    )
    tasks = workload.typical_tasks(pods, coverage=1.0)
    assert [_shape(t) for t in tasks] == [
        (1000, 1000, 1),  # most frequent
        (1000, 1000, 2),  # 2000 milli-cards
        (4000, 500, 1),  # 500 milli-cards, more cpu
        (1000, 500, 1),
        (8000, 0, 0),  # no cards
    ]


def test_typical_tasks_keep_model_constraints_apart():
    pods = _pods(({"cards": 1, "models": {"A10"}}, 2), ({"cards": 1}, 2))
    tasks = workload.typical_tasks(pods, coverage=1.0)
    assert sorted((sorted(t.models), t.weight) for t in tasks) == [([], 0.5), (["A10"], 0.5)]


def test_typical_task_without_models_runs_anywhere_and_with_models_only_there():
    anywhere = workload.TypicalTask(cpu_milli=0, milli_per_card=1000, cards=1, models=frozenset(), weight=1.0)
    only_a10 = dataclasses.replace(anywhere, models=frozenset({"A10"}))
    assert anywhere.runs_on("H800") and anywhere.runs_on(None)
    assert only_a10.runs_on("A10") and not only_a10.runs_on("H800")


def test_no_tasks_give_an_empty_profile():
    assert workload.typical_tasks([]) == ()
