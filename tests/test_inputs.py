"""The simulator's input readers: good files give core objects, bad ones an InputError naming file, line and field."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from archipelago.cluster import topology
from archipelago.sim import inputs, specs, traces

DATA = Path(__file__).resolve().parent / "data"
TRACES = Path(os.environ.get("ARCHIPELAGO_TRACES") or Path(__file__).resolve().parents[2] / "shared" / "traces")

POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
)
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model"
READERS = [traces.read_pods_csv, traces.read_nodes_csv, specs.read_cluster_yaml, specs.read_workload_yaml]


def write(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def pod_row(
    name: str = "p",
    cpu: str = "1000",
    mem: str = "1024",
    num_gpu: str = "1",
    milli: str = "500",
    spec: str = "",
    created: str = "0",
    deleted: str = "10",
) -> str:
    return ",".join((name, cpu, mem, num_gpu, milli, spec, "LS", "Running", created, deleted, created))


def input_error(read, path: Path) -> inputs.InputError:
    with pytest.raises(inputs.InputError) as info:
        read(path)
    err = info.value
    assert err.file == str(path)
    assert str(err).startswith(str(path))
    return err


def trace_file(*parts: str) -> Path:
    path = TRACES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"Alibaba traces not found at {path}; set ARCHIPELAGO_TRACES to the traces directory")
    return path


# --- the error's shape ----------------------------------------------------------------------


def test_error_reads_file_line_field_and_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pods.csv", POD_HEADER, pod_row("a"), pod_row("b", num_gpu="-2"))
    err = input_error(traces.read_pods_csv, Path("pods.csv"))
    assert (err.line, err.field) == (3, "num_gpu")
    assert str(err) == "pods.csv:3: field 'num_gpu': must be a whole number >= 0, got '-2'"


def test_error_leaves_out_unknown_line_and_field():
    assert str(inputs.InputError("x.yaml", "is empty")) == "x.yaml: is empty"
    assert str(inputs.InputError("x.yaml", "bad", line=4)) == "x.yaml:4: bad"


# --- node lists -----------------------------------------------------------------------------


def test_openb_nodes_are_sorted_by_name_with_their_cards(tmp_path):
    rows = ("n-2,64000,262144,2,P100", "n-1,96000,786432,8,V100M32", "n-0,32000,131072,0,")
    path = write(tmp_path, "nodes.csv", NODE_HEADER, *rows)
    n0, n1, n2 = traces.read_nodes_csv(path)
    assert [n0.name, n1.name, n2.name] == ["n-0", "n-1", "n-2"]
    assert (n1.cpu_milli, n1.memory_mib, n1.model, n1.card_count) == (96000, 786432, "V100M32", 8)
    assert n1.devices[0].memory_mib == 32 * 1024
    assert (n2.model, n2.card_count) == ("P100", 2)


def test_cpu_only_row_is_a_node_without_cards(tmp_path):
    (node,) = traces.read_nodes_csv(write(tmp_path, "nodes.csv", NODE_HEADER, "cpu-0,32000,262144,0,"))
    assert node.devices == () and node.model is None


def test_spot_nodes_are_padded_numbers_with_memory_per_core(tmp_path):
    path = write(
        tmp_path, "node_info_df.csv", "gpu_model,gpu_capacity_num,cpu_num,node_name", "H800,8,128,12", "A10,1,192,3"
    )
    a10, h800 = traces.read_nodes_csv(path)
    assert (a10.name, a10.cpu_milli, a10.memory_mib, a10.card_count) == ("spot-0003", 192000, 192 * 8192, 1)
    assert (h800.name, h800.model, h800.card_count) == ("spot-0012", "H800", 8)


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        ((NODE_HEADER, "n-0,32000,1024,2,"), 2, "model", "must name the card model"),
        (
            (NODE_HEADER, "n-0,32000,1024,1,T4", "n-0,32000,1024,1,T4"),
            3,
            "sn",
            "duplicate node name 'n-0' (first on line 2)",
        ),
        ((NODE_HEADER, "n-0,32k,1024,1,T4"), 2, "cpu_milli", "whole number"),
        (
            ("sn,cpu_milli,memory_mib,gpu,model,rack", "n-0,1,1,1,T4,r1"),
            1,
            "rack",
            "unknown column 'rack'; expected the columns sn, cpu_milli",
        ),
        (("sn,cpu_milli,gpu,model", "n-0,1,1,T4"), 1, "memory_mib", "required column 'memory_mib' is missing"),
        (("host,cpu", "n-0,1"), 1, None, "not a node list"),
        (
            ("gpu_model,gpu_capacity_num,cpu_num,node_name", "A10,1,128,7", "A10,1,128,0007"),
            3,
            "node_name",
            "duplicate node name 'spot-0007'",
        ),
    ],
)
def test_bad_node_list_names_line_and_field(tmp_path, lines, line, field, fragment):
    err = input_error(traces.read_nodes_csv, write(tmp_path, "nodes.csv", *lines))
    assert (err.line, err.field) == (line, field)
    assert fragment in err.message


# --- pod lists ------------------------------------------------------------------------------


def test_openb_pods_become_trace_pods_in_file_order(tmp_path):
    path = write(
        tmp_path,
        "pods.csv",
        POD_HEADER,
        pod_row(
            "b",
            cpu="6000",
            mem="12288",
            num_gpu="1",
            milli="460",
            spec="V100M16|V100M32",
            created="1.5",
            deleted="7.25",
        ),
        pod_row("a", num_gpu="0", milli="0", created="3", deleted=""),
    )
    shared, cpu = traces.read_pods_csv(path)
    assert (shared.request.name, shared.request.cpu_milli, shared.request.memory_mib) == ("b", 6000, 12288)
    assert (shared.request.cards, shared.request.milli_per_card, shared.request.sharing) == (1, 460, True)
    assert shared.request.models == frozenset({"V100M16", "V100M32"})
    assert (shared.created, shared.deleted) == (1.5, 7.25)
    assert (cpu.request.cards, cpu.request.milli, cpu.request.models) == (0, 0, frozenset())
    assert (cpu.created, cpu.deleted) == (3.0, None)


def test_pods_without_time_columns_have_no_times(tmp_path):
    path = write(tmp_path, "multigpu20.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli", "p,8000,4096,4,1000")
    (pod,) = traces.read_pods_csv(path)
    assert (pod.request.cards, pod.request.milli, pod.created, pod.deleted) == (4, 4000, None, None)


def test_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "pods.csv"
    path.write_text(POD_HEADER + "\n" + pod_row("a") + "\n", encoding="utf-8-sig")
    assert traces.read_pods_csv(path)[0].request.name == "a"


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, "pods.csv", POD_HEADER, pod_row("a"), "", pod_row("b"), "")
    assert [p.request.name for p in traces.read_pods_csv(path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        (
            (POD_HEADER + ",gpu_type", pod_row() + ",x"),
            1,
            "gpu_type",
            "unknown column 'gpu_type'; expected the columns name, cpu_milli, memory_mib, num_gpu, gpu_milli (optional: gpu_spec",
        ),
        (("name,cpu_milli,memory_mib,num_gpu", "p,1,1,0"), 1, "gpu_milli", "required column 'gpu_milli' is missing"),
        (("name,cpu_milli,memory_mib,num_gpu,gpu_milli,name", "p,1,1,0,0,q"), 1, "name", "appears twice"),
        ((POD_HEADER, pod_row("a"), "b,1000,1024,1"), 3, None, "expected 11 fields (name, cpu_milli"),
        ((POD_HEADER, pod_row(cpu="1.5")), 2, "cpu_milli", "must be a whole number >= 0, got '1.5'"),
        ((POD_HEADER, pod_row(mem="-1")), 2, "memory_mib", "must be a whole number >= 0, got '-1'"),
        (
            (POD_HEADER, pod_row(milli="1500")),
            2,
            "gpu_milli",
            "at most 1000 (one whole card), got 1500; ask for more cards with num_gpu",
        ),
        ((POD_HEADER, pod_row(num_gpu="2", milli="0")), 2, "gpu_milli", "use 1000 for whole cards"),
        ((POD_HEADER, pod_row(num_gpu="0", milli="300")), 2, "gpu_milli", "set num_gpu to 1"),
        ((POD_HEADER, pod_row(created="-5")), 2, "creation_time", "seconds >= 0"),
        ((POD_HEADER, pod_row(deleted="soon")), 2, "deletion_time", "seconds >= 0"),
        (
            (POD_HEADER, pod_row(created="100", deleted="99.5")),
            2,
            "deletion_time",
            "must not be before creation_time (100)",
        ),
        ((POD_HEADER, pod_row(created="", deleted="5")), 2, "deletion_time", "needs a creation_time"),
        ((POD_HEADER, pod_row("", num_gpu="0", milli="0")), 2, "name", "must not be empty"),
        ((POD_HEADER, pod_row("a"), pod_row("b"), pod_row("a")), 4, "name", "duplicate pod name 'a' (first on line 2)"),
        ((POD_HEADER, '"a,1000'), 2, None, "malformed CSV"),
    ],
)
def test_bad_pod_list_names_line_and_field(tmp_path, lines, line, field, fragment):
    err = input_error(traces.read_pods_csv, write(tmp_path, "pods.csv", *lines))
    assert (err.line, err.field) == (line, field)
    assert fragment in err.message


@pytest.mark.parametrize("read", [traces.read_pods_csv, traces.read_nodes_csv])
def test_empty_file_says_which_header_is_expected(tmp_path, read):
    err = input_error(read, write(tmp_path, "empty.csv"))
    assert err.line is None and "is empty; expected a header line with the columns" in err.message


@pytest.mark.parametrize(("read", "header"), [(traces.read_pods_csv, POD_HEADER), (traces.read_nodes_csv, NODE_HEADER)])
def test_header_only_file_is_an_error(tmp_path, read, header):
    assert "has a header but no" in input_error(read, write(tmp_path, "x.csv", header)).message


@pytest.mark.parametrize("read", READERS)
def test_missing_or_unreadable_file_cannot_be_read(tmp_path, read):
    assert input_error(read, tmp_path / "absent").message.startswith("cannot read: ")
    assert input_error(read, tmp_path).message.startswith("cannot read: ")  # a directory
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in input_error(read, binary).message


# --- the real traces ------------------------------------------------------------------------


def test_openb_gpu_node_list_has_1213_nodes_with_6212_cards():
    found = traces.read_nodes_csv(trace_file("alibaba-gpu-v2023", "openb_node_list_gpu_node.csv"))
    assert len(found) == 1213 and sum(n.card_count for n in found) == 6212
    assert [n.name for n in found] == sorted(n.name for n in found)


def test_openb_default_pod_list_has_8152_pods_read_well_under_a_second():
    path = trace_file("alibaba-gpu-v2023", "openb_pod_list_default.csv")
    start = time.perf_counter()
    pods = traces.read_pods_csv(path)
    assert time.perf_counter() - start < 1.0
    assert len(pods) == 8152
    assert all(p.created is not None and p.deleted is not None and p.deleted >= p.created for p in pods)
    assert max(p.request.cards for p in pods) == 8


@pytest.mark.parametrize(
    ("variant", "count", "timed"), [("gpushare40", 8152, True), ("gpuspec10", 8152, True), ("multigpu20", 8324, False)]
)
def test_openb_variants_read_with_or_without_times(variant, count, timed):
    pods = traces.read_pods_csv(trace_file("alibaba-gpu-v2023", f"openb_pod_list_{variant}.csv"))
    assert len(pods) == count
    assert all((p.created is not None) == timed for p in pods)


def test_openb_all_node_list_adds_310_cpu_only_nodes():
    found = traces.read_nodes_csv(trace_file("alibaba-gpu-v2023", "openb_node_list_all_node.csv"))
    assert len(found) == 1523 and sum(n.devices == () for n in found) == 310


def test_spot_node_list_has_4278_nodes_with_10412_cards():
    found = traces.read_nodes_csv(trace_file("alibaba-spot-gpu-v2026", "node_info_df.csv"))
    assert len(found) == 4278 and sum(n.card_count for n in found) == 10412
    assert all(n.name.startswith("spot-") for n in found)


# --- cluster.yaml ---------------------------------------------------------------------------


def test_cluster_yaml_builds_named_nodes_with_labels_taints_and_unhealthy_cards():
    cluster = specs.read_cluster_yaml(DATA / "cluster.yaml")
    assert [n.name for n in cluster.nodes] == ["a100-0", "a100-1", "t4-0", "cpu-0", "cpu-1", "cpu-2"]
    a100 = cluster.nodes[0]
    assert (a100.model, a100.card_count, a100.pool) == ("A100-SXM4-80GB", 8, "gpu-a100")
    assert (a100.cpu_milli, a100.memory_mib) == (128000, 1048576)
    assert [d.index for d in a100.devices if not d.healthy] == [3]
    assert a100.taints[0].key == "dedicated" and a100.taints[0].effect == "NoSchedule"
    assert cluster.path(0) == ("s1", "a", "a100-0") and cluster.path(2) == ("s1", "b", "t4-0")
    assert cluster.nodes[3].devices == () and cluster.nodes[3].pool == "default"
    assert cluster.total_cards == 20


def test_cluster_yaml_topology_defaults_to_spine_and_island(tmp_path):
    path = write(tmp_path, "c.yaml", "nodeGroups:", "  - {name: n, cpuMilli: 1000, memoryMiB: 1024}")
    assert specs.read_cluster_yaml(path).topology.levels == topology.DEFAULT_LEVELS


GROUP = "  - name: g\n    cpuMilli: 1000\n    memoryMiB: 1024"


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            f"nodeGroups:\n{GROUP}\n    cpus: 4",
            5,
            "nodeGroups[0].cpus",
            "unknown key; expected one of: cards, count, cpuMilli",
        ),
        (
            f"nodeGroups:\n{GROUP}\n  - name: h\n    cpuMilli: -1\n    memoryMiB: 1",
            6,
            "nodeGroups[1].cpuMilli",
            "must be >= 0, got -1",
        ),
        (f"nodeGroups:\n{GROUP}\n    count: 2.5", 5, "nodeGroups[0].count", "must be a whole number, got 2.5"),
        ("nodeGroups:\n  - name: g\n    cpuMilli: 1000", 2, "nodeGroups[0].memoryMiB", "is required"),
        ("topology: []", 1, "nodeGroups", "is required"),
        ("nodeGroups: []", 1, "nodeGroups", "at least 1 item"),
        (f"nodeGroups:\n{GROUP}\n    cards: 8", 2, "nodeGroups[0].model", "is required when cards is 8"),
        (
            f"nodeGroups:\n{GROUP}\n    model: T4\n    cards: 2\n    unhealthyCards: [0, 2]",
            7,
            "nodeGroups[0].unhealthyCards[1]",
            "card 2 does not exist; the group's nodes have cards 0..1",
        ),
        (f"nodeGroups:\n{GROUP}\n{GROUP}", 5, "nodeGroups[1].name", "duplicate node name 'g-0'"),
        (
            f"nodeGroups:\n{GROUP}\n    taints: [{{key: k, effect: Never}}]",
            5,
            "nodeGroups[0].taints[0].effect",
            "must be 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'",
        ),
        (f"topology: [rack, rack]\nnodeGroups:\n{GROUP}", 1, "topology", "must be distinct"),
        (f"nodeGroups:\n{GROUP}\n    cpuMilli: 2", 5, None, "key 'cpuMilli' appears twice"),
    ],
)
def test_bad_cluster_yaml_names_line_and_field(tmp_path, text, line, field, fragment):
    err = input_error(specs.read_cluster_yaml, write(tmp_path, "cluster.yaml", text))
    assert (err.line, err.field) == (line, field)
    assert fragment in err.message


# --- workload.yaml --------------------------------------------------------------------------


def test_workload_yaml_expands_copies_with_their_times():
    pods = specs.read_workload_yaml(DATA / "workload.yaml")
    assert [p.request.name for p in pods] == ["chat-0", "chat-1", "chat-2", "train"]
    chat = pods[1].request
    assert (chat.cpu_milli, chat.memory_mib, chat.device_memory_mib) == (4000, 16384, 20480)
    assert (chat.cards, chat.milli_per_card) == (1, 250)
    assert chat.models == frozenset({"A100-SXM4-80GB", "H800"}) and chat.resource == "nvidia.com/gpu"
    assert chat.priority == 5 and dict(chat.node_selector) == {"archipelago.dev/island": "a"}
    assert chat.tolerations[0].key == "dedicated" and chat.tolerations[0].operator == "Equal"
    assert [(p.created, p.deleted) for p in pods[:3]] == [(100, 3700), (160, 3760), (220, 3820)]


def test_workload_yaml_defaults_to_whole_cards_created_at_zero_never_leaving():
    train = specs.read_workload_yaml(DATA / "workload.yaml")[-1]
    assert (train.request.cards, train.request.milli_per_card, train.request.milli) == (8, 1000, 8000)
    assert (train.created, train.deleted) == (0, None)


POD = "  - name: p\n    cards: 1"


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            f"pods:\n{POD}\n  - name: q\n    milliPerCardd: 5",
            5,
            "pods[1].milliPerCardd",
            "unknown key; expected one of:",
        ),
        (f"pods:\n{POD}\n{POD}\n{POD}\n    milliPerCard: -3", 8, "pods[2].milliPerCard", "must be >= 1, got -3"),
        (
            f"pods:\n{POD}\n    milliPerCard: 1500",
            4,
            "pods[0].milliPerCard",
            "milliPerCard must be at most 1000 (one whole card), got 1500; ask for more cards",
        ),
        (
            "pods:\n  - name: p\n    deviceMemoryMiB: 1024",
            3,
            "pods[0].deviceMemoryMiB",
            "deviceMemoryMiB need cards >= 1",
        ),
        (f"pods:\n{POD}\n    createdAt: soon", 4, "pods[0].createdAt", "must be a number, got 'soon'"),
        (f"pods:\n{POD}\n    duration: 0", 4, "pods[0].duration", "must be > 0"),
        (f"pods:\n{POD}\n    every: 1e3", 4, "pods[0].every", "got '1e3'; write it as 1.0e+03"),
        (f"pods:\n{POD}\n    nodeSelector: [a]", 4, "pods[0].nodeSelector", "must be a mapping"),
        (
            f"pods:\n{POD}\n    tolerations: [{{operator: Maybe}}]",
            4,
            "pods[0].tolerations[0].operator",
            "must be 'Equal' or 'Exists'",
        ),
        ("pods:\n  - chat", 2, "pods[0]", "must be a mapping, got 'chat'"),
        ("nodes: []", 1, "nodes", "unknown key; expected one of: pods"),
        ("# nothing\npods: 5", 2, "pods", "must be a list, got 5"),
        (
            f"pods:\n  - name: p\n    count: 2\n{POD}\n  - name: p-1",
            6,
            "pods[2].name",
            "duplicate pod name 'p-1', also made by pods[0]",
        ),
        ("pods:\n  - name: p\n    count: 0", 3, "pods[0].count", "must be >= 1"),
    ],
)
def test_bad_workload_yaml_names_line_and_field(tmp_path, text, line, field, fragment):
    err = input_error(specs.read_workload_yaml, write(tmp_path, "workload.yaml", text))
    assert (err.line, err.field) == (line, field)
    assert fragment in err.message


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("pods:\n  - name: p\n    cards: [1\n", 5, "while parsing a flow sequence (line 3): expected ',' or ']'"),
        ("pods:\n  - name: p\n\tcards: 1\n", 3, "invalid YAML"),
        ("- name: p\n- name: q", 1, "top level must be a mapping with a 'pods' list, got a list"),
        ("just text", 1, "top level must be a mapping"),
        ("# only a comment\n", None, "is empty"),
        ("pods:\n  - name: \x07", 2, "character U+0007 is not allowed"),
        ("pods: []\n---\npods: []", 2, "invalid YAML"),
    ],
)
def test_unreadable_workload_yaml_names_the_line(tmp_path, text, line, fragment):
    err = input_error(specs.read_workload_yaml, write(tmp_path, "workload.yaml", text))
    assert (err.line, err.field) == (line, None)
    assert fragment in err.message


@pytest.mark.parametrize(
    "text",
    [
        "\x00",
        "[",
        "{",
        "a,b\n1",
        ",,,\n,,,",
        "pods: {a: 1}",
        "nodeGroups: [1]",
        "pods: [{name: [x]}]",
        "&a [*a]",
        "!!python/object:os.system {}",
        "? [a]\n: 1",
        "[" * 2000,
    ],
)
@pytest.mark.parametrize("read", READERS)
def test_junk_raises_only_input_error(tmp_path, read, text):
    input_error(read, write(tmp_path, "junk", text))
