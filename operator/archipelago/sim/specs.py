"""Hand-written cluster and workload files in YAML, with Kubernetes-style camelCase keys.

The formats are documented on ``read_cluster_yaml`` and ``read_workload_yaml``. Errors name
the file, the line of the offending key and the field path (``pods[2].milliPerCard``).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import alias_generators

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices, nodes
from archipelago.cluster import topology as topology_
from archipelago.sim import inputs, scenario

MAX_COPIES = 1_000_000
"""The most nodes or pods one YAML group may expand to."""

_Whole = Annotated[int, pydantic.Strict(), pydantic.Field(ge=0)]
_Count = Annotated[int, pydantic.Strict(), pydantic.Field(ge=1, le=MAX_COPIES)]
_Seconds = Annotated[float, pydantic.Strict(), pydantic.Field(ge=0)]
_Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class _Spec(pydantic.BaseModel):
    # Kubernetes-style camelCase keys; unknown keys are errors, not silently dropped typos.
    # Unquoted numbers in string fields (label values, names) are taken as their text.
    model_config = pydantic.ConfigDict(
        extra="forbid",
        alias_generator=alias_generators.to_camel,
        allow_inf_nan=False,
        coerce_numbers_to_str=True,
        frozen=True,
    )


class _TaintSpec(_Spec):
    key: str = pydantic.Field(min_length=1)
    value: str = ""
    effect: _Effect = "NoSchedule"


class _TolerationSpec(_Spec):
    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


class _NodeGroupSpec(_Spec):
    name: str = pydantic.Field(min_length=1)
    count: _Count = 1
    model: str | None = None
    cards: Annotated[int, pydantic.Strict(), pydantic.Field(ge=0, le=inputs.MAX_CARDS_PER_NODE)] = 0
    cpu_milli: _Whole
    memory_mib: _Whole = pydantic.Field(alias="memoryMiB")
    pool: str = "default"
    labels: dict[str, str] = {}
    taints: list[_TaintSpec] = []
    unhealthy_cards: list[_Whole] = []


class _ClusterSpec(_Spec):
    topology: list[str] = list(topology_.DEFAULT_LEVELS)
    node_groups: list[_NodeGroupSpec] = pydantic.Field(min_length=1)


class _RequestSpec(_Spec):
    """What one pod asks for, shared by the pod workload's groups and the gang workload's pod sets."""

    cpu_milli: _Whole = 0
    memory_mib: _Whole = pydantic.Field(0, alias="memoryMiB")
    cards: _Whole = 0
    milli_per_card: Annotated[int, pydantic.Strict(), pydantic.Field(ge=1)] | None = None
    device_memory_mib: _Whole = pydantic.Field(0, alias="deviceMemoryMiB")
    models: list[str] = []

    def request(self, name: str, **more: Any) -> workload.PodRequest:
        """The pod request these fields make, named ``name``; ``more`` sets further PodRequest fields.

        Raises ``ValueError`` for a request the workload model refuses.
        """
        return workload.PodRequest(
            name=name,
            cpu_milli=self.cpu_milli,
            memory_mib=self.memory_mib,
            cards=self.cards,
            milli_per_card=self.milli_per_card or 0,
            device_memory_mib=self.device_memory_mib,
            models=frozenset(self.models),
            **more,
        )


class _PodGroupSpec(_RequestSpec):
    name: str = pydantic.Field(min_length=1)
    count: _Count = 1
    resource: str | None = None
    priority: Annotated[int, pydantic.Strict()] = 0
    node_selector: dict[str, str] = {}
    tolerations: list[_TolerationSpec] = []
    created_at: _Seconds = 0.0
    every: _Seconds = 0.0
    duration: Annotated[float, pydantic.Strict(), pydantic.Field(gt=0)] | None = None


class _WorkloadSpec(_Spec):
    pods: list[_PodGroupSpec] = pydantic.Field(min_length=1)


def read_cluster_yaml(path: str | os.PathLike) -> cluster_.Cluster:
    """The cluster a ``cluster.yaml`` describes, nodes in group order.

    ::

        topology: [archipelago.dev/spine, archipelago.dev/island]  # default topology.DEFAULT_LEVELS
        nodeGroups:
          - name: a100            # nodes a100-0 .. a100-<count-1> (the suffix is kept for count 1)
            count: 8              # default 1
            model: A100-SXM4-80GB # any name; devices.CATALOGUE supplies the facts of known ones
            cards: 8              # default 0 (then omit model)
            cpuMilli: 128000
            memoryMiB: 1048576
            pool: gpu-a100        # default "default"
            labels: {archipelago.dev/spine: s1, archipelago.dev/island: a}
            taints: [{key: dedicated, value: train, effect: NoSchedule}]
            unhealthyCards: [3]   # indices of unhealthy cards, the same on every node of the group
    """
    file = inputs.file_name(path)
    root, spec = _load(file, path, _ClusterSpec, "nodeGroups")
    built: list[nodes.Node] = []
    made_by: dict[str, int] = {}
    for i, group in enumerate(spec.node_groups):
        item = ("nodeGroups", i)
        if group.cards and not group.model:
            message = f"is required when cards is {group.cards} (a name such as A100-SXM4-80GB)"
            raise _error_at(file, root, (*item, "model"), message)
        for j, card in enumerate(group.unhealthy_cards):
            if card >= group.cards:
                have = f"cards 0..{group.cards - 1}" if group.cards else "no cards"
                message = f"card {card} does not exist; the group's nodes have {have}"
                raise _error_at(file, root, (*item, "unhealthyCards", j), message)
        unhealthy = frozenset(group.unhealthy_cards)
        for k in range(group.count):
            node_name = f"{group.name}-{k}"
            if node_name in made_by:
                message = f"duplicate node name {node_name!r}, also made by nodeGroups[{made_by[node_name]}]"
                raise _error_at(file, root, (*item, "name"), message)
            made_by[node_name] = i
            try:
                cards = devices.cards(group.model, group.cards, unhealthy=unhealthy) if group.model else ()
                node = nodes.Node(
                    name=node_name,
                    cpu_milli=group.cpu_milli,
                    memory_mib=group.memory_mib,
                    devices=cards,
                    pool=group.pool,
                    labels=group.labels,
                    taints=tuple(nodes.Taint(t.key, t.value, t.effect) for t in group.taints),
                )
            except ValueError as exc:
                raise _domain_error(file, root, item, _NodeGroupSpec, exc) from None
            built.append(node)
    try:
        return cluster_.build(built, spec.topology)
    except ValueError as exc:
        raise _error_at(file, root, ("topology",), str(exc)) from None


def read_workload_yaml(path: str | os.PathLike) -> list[scenario.TracePod]:
    """The pods a ``workload.yaml`` describes, group by group, copies in order.

    ::

        pods:
          - name: chat            # pods chat-0 .. chat-<count-1>; just "chat" when count is 1
            count: 40             # default 1
            cpuMilli: 4000        # default 0
            memoryMiB: 16384      # default 0
            cards: 1              # default 0
            milliPerCard: 250     # 1..1000; default 1000 when cards > 0
            deviceMemoryMiB: 20480
            models: [A100-SXM4-80GB, H800]   # default: any model
            resource: nvidia.com/gpu         # default: any
            priority: 0
            nodeSelector: {k: v}
            tolerations: [{key: dedicated, operator: Equal, value: train, effect: NoSchedule}]
            createdAt: 0          # seconds, default 0
            every: 60             # seconds between successive copies, default 0
            duration: 3600        # seconds until deletion; omit and the pods never leave

    Copy ``k`` of a group is created at ``createdAt + k * every``.
    """
    file = inputs.file_name(path)
    root, spec = _load(file, path, _WorkloadSpec, "pods")
    result: list[scenario.TracePod] = []
    made_by: dict[str, int] = {}
    for i, group in enumerate(spec.pods):
        item = ("pods", i)
        names = [group.name] if group.count == 1 else [f"{group.name}-{k}" for k in range(group.count)]
        tolerations = tuple(nodes.Toleration(t.key, t.operator, t.value, t.effect) for t in group.tolerations)
        for k, pod_name in enumerate(names):
            if pod_name in made_by:
                message = f"duplicate pod name {pod_name!r}, also made by pods[{made_by[pod_name]}]"
                raise _error_at(file, root, (*item, "name"), message)
            made_by[pod_name] = i
            try:
                request = group.request(
                    pod_name,
                    resource=group.resource,
                    node_selector=group.node_selector,
                    tolerations=tolerations,
                    priority=group.priority,
                )
            except ValueError as exc:
                raise _domain_error(file, root, item, _PodGroupSpec, exc) from None
            created = group.created_at + k * group.every
            deleted = None if group.duration is None else created + group.duration
            result.append(scenario.TracePod(request=request, created=created, deleted=deleted))
    return result


_SpecT = typing.TypeVar("_SpecT", bound=_Spec)


def _load(file: str, path: str | os.PathLike, spec: type[_SpecT], list_key: str) -> tuple[yaml.Node, _SpecT]:
    """The composed YAML tree (for line numbers) and the validated spec."""
    with inputs.open_text(file, path) as f:
        text = f.read()
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(file, text, exc) from None
    except RecursionError:
        raise inputs.InputError(file, "invalid YAML: nested too deeply") from None
    if root is None:
        raise inputs.InputError(file, f"is empty; expected a mapping with a {list_key!r} list")
    if not isinstance(data, dict):
        message = f"top level must be a mapping with a {list_key!r} list, got {_kind(data)}"
        raise inputs.InputError(file, message, line=_line(root))
    try:
        _check_unique_keys(file, root)
        return root, spec.model_validate(data)
    except RecursionError:
        raise inputs.InputError(file, "nested too deeply") from None
    except pydantic.ValidationError as exc:
        # One error, the most telling: a wrong key explains a missing one, so missing keys go last.
        errors = exc.errors(include_url=False)
        first = min(errors, key=lambda e: (e["type"] == "missing", _line_of(root, e["loc"])))
        raise _error_at(file, root, first["loc"], _human(spec, first)) from None


def _yaml_error(file: str, text: str, exc: yaml.YAMLError) -> inputs.InputError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: character U+{exc.character:04X} is not allowed; YAML must be printable text"
        return inputs.InputError(file, message, line=line)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return inputs.InputError(file, f"invalid YAML: {exc}")
    problem, mark = exc.problem or "", exc.problem_mark or exc.context_mark
    if exc.context and exc.context_mark:
        problem = f"{exc.context} (line {exc.context_mark.line + 1}): {problem}"
    return inputs.InputError(file, f"invalid YAML: {problem}", line=None if mark is None else mark.line + 1)


def _check_unique_keys(file: str, node: yaml.Node) -> None:
    # PyYAML keeps the last of two equal keys; a repeated key is almost always a mistake.
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen and key.value != "<<":
                    raise inputs.InputError(file, f"key {key.value!r} appears twice in one mapping", line=_line(key))
                seen.add(key.value)
            _check_unique_keys(file, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(file, item)


def _error_at(file: str, root: yaml.Node, loc: Sequence[Any], message: str) -> inputs.InputError:
    """An error at the field ``loc``, on the line of its key (or of the nearest parent present)."""
    loc = [part for part in loc if part != "[key]"]
    return inputs.InputError(file, message, line=_line_of(root, loc), field=_path(loc))


def _line_of(root: yaml.Node, loc: Sequence[Any]) -> int:
    """The line of the key at ``loc``, or of the nearest parent present (a missing key has no line)."""
    return _walk(root, loc)[1]


def _node_at(root: yaml.Node, loc: Sequence[Any]) -> yaml.Node | None:
    """The value node at ``loc``, or None when the document does not spell it out."""
    node, _, found = _walk(root, loc)
    return node if found else None


def _walk(root: yaml.Node, loc: Sequence[Any]) -> tuple[yaml.Node, int, bool]:
    """The deepest node along ``loc``, its line (a mapping value's is its key's), and whether ``loc`` exists."""
    node, line = root, _line(root)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key = str(part)
            pair = next((kv for kv in node.value if isinstance(kv[0], yaml.ScalarNode) and kv[0].value == key), None)
            if pair is None:
                return node, line, False
            line, node = _line(pair[0]), pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = _line(node)
        else:
            return node, line, False
    return node, line, True


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _domain_error(
    file: str, root: yaml.Node, item: tuple[str, int], spec: type[_Spec], exc: ValueError
) -> inputs.InputError:
    """A core model's ``ValueError`` in YAML terms: snake_case fields renamed to their keys.

    The error points at the first key the message names that the item spells out, else at the item.
    """
    message = str(exc)
    aliases = {name: field.alias or name for name, field in spec.model_fields.items()}
    message = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: aliases.get(m.group(0), m.group(0)), message)
    item_node = _node_at(root, item)
    present = {k.value for k, _ in item_node.value} if isinstance(item_node, yaml.MappingNode) else set()
    named = [alias for alias in re.findall(r"\b\w+\b", message) if alias in present and alias in aliases.values()]
    return _error_at(file, root, (*item, named[0]) if named else item, message)


def _human(spec: type[_Spec], error: Mapping[str, Any]) -> str:
    """Pydantic's message for one error, in the words of someone editing the YAML."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    got = f", got {value!r}"
    match kind:
        case "missing":
            return "is required"
        case "extra_forbidden":
            keys = _keys_at(spec, error["loc"][:-1])
            return "unknown key" + (f"; expected one of: {', '.join(keys)}" if keys else "")
        case "greater_than_equal":
            return f"must be >= {ctx['ge']}{got}"
        case "greater_than":
            return f"must be > {ctx['gt']}{got}"
        case "less_than_equal":
            return f"must be <= {ctx['le']}{got}"
        case "int_type" | "int_parsing" | "int_from_float":
            return f"must be a whole number{got}"
        case "float_type" | "float_parsing":
            if isinstance(value, str) and re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value):
                # YAML 1.1 needs a dot in a float: 1e6 is text, 1.0e+6 a number.
                return f"must be a number{got}; write it as {float(value):.1e}"
            return f"must be a number{got}"
        case "finite_number":
            return f"must be a finite number{got}"
        case "string_type":
            return f"must be a string{got}"
        case "string_too_short":
            return "must not be empty"
        case "list_type":
            return f"must be a list{got}"
        case "too_short":
            return f"must have at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}"
        case "dict_type" | "model_type" | "model_attributes_type":
            return f"must be a mapping{got}"
        case "literal_error":
            return f"must be {ctx['expected']}{got}"
        case "value_error":
            return str(ctx.get("error", error["msg"]))
    message = str(error["msg"])
    return message[:1].lower() + message[1:]


def _keys_at(spec: type[_Spec], loc: Sequence[Any]) -> list[str]:
    """The keys the spec model at ``loc`` accepts, sorted; empty if ``loc`` is not a model."""
    tp: Any = spec
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if typing.get_origin(tp) is list and args else None
        elif isinstance(tp, type) and issubclass(tp, _Spec):
            tp = next((f.annotation for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
        else:
            return []
    if isinstance(tp, type) and issubclass(tp, _Spec):
        return sorted(f.alias or n for n, f in tp.model_fields.items())
    return []


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"
