"""Readers for the Alibaba trace CSVs (formats in ``../shared/traces/README.md``).

``read_nodes_csv`` takes the openb node lists and the spot-GPU node list (detected from the
header); ``read_pods_csv`` takes the openb pod lists. Bad content raises ``inputs.InputError``
with the file, line and column.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

from archipelago import workload
from archipelago.cluster import devices, nodes
from archipelago.sim import inputs, scenario

OPENB_NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
SPOT_NODE_COLUMNS = ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_OPTIONAL_COLUMNS = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time", "scheduled_time")

SPOT_MEMORY_MIB_PER_CORE = 8 * 1024
"""The spot node list has no memory column; its nodes get 8 GiB per core."""


def read_nodes_csv(path: str | os.PathLike) -> list[nodes.Node]:
    """The nodes of an openb or spot node list, sorted by name (the FGD protocol sorts by ``sn``).

    The format is detected from the header:

    - openb (``sn, cpu_milli, memory_mib, gpu, model``): one node per row, named ``sn``, with
      ``gpu`` cards of ``model``. A row with ``gpu`` 0 and an empty ``model`` is a CPU-only node.
    - spot (``gpu_model, gpu_capacity_num, cpu_num, node_name``): ``cpu_num`` is cores, so
      ``cpu_milli = cpu_num * 1000``. The file has no memory column, so memory is assumed to be
      ``SPOT_MEMORY_MIB_PER_CORE`` (8 GiB) per core. Node names are numbers in the file; nodes
      are named ``spot-<node_name>`` zero-padded to 4 digits (``spot-0042``).
    """
    name = inputs.file_name(path)
    with inputs.open_text(name, path) as f:
        reader = csv.reader(f, strict=True)
        either = f"{_columns(OPENB_NODE_COLUMNS)} (openb) or {_columns(SPOT_NODE_COLUMNS)} (spot)"
        header_line, columns = _header(name, reader, either)
        if "sn" in columns:
            expected, parse, name_column = OPENB_NODE_COLUMNS, _openb_node, "sn"
        elif "node_name" in columns:
            expected, parse, name_column = SPOT_NODE_COLUMNS, _spot_node, "node_name"
        else:
            raise inputs.InputError(
                name,
                f"not a node list: expected the openb columns {_columns(OPENB_NODE_COLUMNS)} "
                f"or the spot columns {_columns(SPOT_NODE_COLUMNS)}, got {_columns(columns)}",
                line=header_line,
            )
        _check_columns(name, header_line, columns, expected, ())
        result: list[nodes.Node] = []
        first_line: dict[str, int] = {}
        for row in _rows(name, reader, columns):
            node = parse(row)
            if node.name in first_line:
                first = first_line[node.name]
                raise row.error(name_column, f"duplicate node name {node.name!r} (first on line {first})")
            first_line[node.name] = row.line
            result.append(node)
    if not result:
        raise inputs.InputError(name, "has a header but no nodes; add at least one node row")
    result.sort(key=lambda n: n.name)
    return result


def read_pods_csv(path: str | os.PathLike) -> list[scenario.TracePod]:
    """The pods of an openb pod list, in file order.

    Required columns: ``name, cpu_milli, memory_mib, num_gpu, gpu_milli`` (all the ``multigpu20``
    variant has). Optional: ``gpu_spec`` (allowed models, ``|``-separated, empty for any),
    ``creation_time`` and ``deletion_time`` (seconds, may be fractional; empty for unknown);
    ``qos``, ``pod_phase`` and ``scheduled_time`` are accepted and ignored.
    """
    name = inputs.file_name(path)
    with inputs.open_text(name, path) as f:
        reader = csv.reader(f, strict=True)
        header_line, columns = _header(name, reader, _columns(POD_COLUMNS))
        _check_columns(name, header_line, columns, POD_COLUMNS, POD_OPTIONAL_COLUMNS)
        result: list[scenario.TracePod] = []
        first_line: dict[str, int] = {}
        for row in _rows(name, reader, columns):
            pod = _trace_pod(row)
            pod_name = pod.request.name
            if pod_name in first_line:
                raise row.error("name", f"duplicate pod name {pod_name!r} (first on line {first_line[pod_name]})")
            first_line[pod_name] = row.line
            result.append(pod)
    if not result:
        raise inputs.InputError(name, "has a header but no pods; add at least one pod row")
    return result


class _Row:
    """One CSV data row: its cells by column and its line, with typed accessors that raise ``inputs.InputError``."""

    __slots__ = ("file", "line", "cells")

    def __init__(self, file: str, line: int, cells: dict[str, str]):
        self.file = file
        self.line = line
        self.cells = cells

    def error(self, column: str | None, message: str) -> inputs.InputError:
        return inputs.InputError(self.file, message, line=self.line, field=column)

    def text(self, column: str) -> str:
        return self.cells.get(column, "").strip()

    def name(self, column: str) -> str:
        value = self.text(column)
        if not value:
            raise self.error(column, "must not be empty")
        return value

    def whole(self, column: str) -> int:
        raw = self.text(column)
        if raw.isascii() and raw.isdigit():
            return int(raw)
        raise self.error(column, f"must be a whole number >= 0, got {raw!r}")

    def seconds(self, column: str) -> float | None:
        raw = self.text(column)
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise self.error(column, f"must be a time in seconds >= 0 (or empty for unknown), got {raw!r}")
        return value


def _openb_node(row: _Row) -> nodes.Node:
    return _node(row, row.name("sn"), row.whole("cpu_milli"), row.whole("memory_mib"), "model", "gpu")


def _spot_node(row: _Row) -> nodes.Node:
    cores = row.whole("cpu_num")
    name = f"spot-{row.whole('node_name'):04d}"
    return _node(row, name, cores * 1000, cores * SPOT_MEMORY_MIB_PER_CORE, "gpu_model", "gpu_capacity_num")


def _node(row: _Row, name: str, cpu_milli: int, memory_mib: int, model_column: str, count_column: str) -> nodes.Node:
    count = row.whole(count_column)
    model = row.text(model_column)
    if count > inputs.MAX_CARDS_PER_NODE:
        raise row.error(count_column, f"must be at most {inputs.MAX_CARDS_PER_NODE} cards per node, got {count}")
    if count and not model:
        raise row.error(
            model_column, f"must name the card model when {count_column} is {count}; leave it 0 for a CPU-only node"
        )
    try:
        cards = devices.cards(model, count) if count else ()
        return nodes.Node(name=name, cpu_milli=cpu_milli, memory_mib=memory_mib, devices=cards)
    except ValueError as exc:
        raise row.error(None, str(exc)) from None


def _trace_pod(row: _Row) -> scenario.TracePod:
    pod_name = row.name("name")
    cards = row.whole("num_gpu")
    milli = row.whole("gpu_milli")
    if milli > devices.MILLI_PER_CARD:
        raise row.error(
            "gpu_milli", f"must be at most 1000 (one whole card), got {milli}; ask for more cards with num_gpu instead"
        )
    if cards and not milli:
        raise row.error(
            "gpu_milli", f"must be 1..1000 per card when num_gpu is {cards}, got 0; use 1000 for whole cards"
        )
    if milli and not cards:
        raise row.error(
            "gpu_milli", f"must be 0 when num_gpu is 0, got {milli}; set num_gpu to 1 for a share of one card"
        )
    created = row.seconds("creation_time")
    deleted = row.seconds("deletion_time")
    if deleted is not None:
        if created is None:
            raise row.error("deletion_time", "needs a creation_time; leave both empty when the times are unknown")
        if deleted < created:
            raise row.error(
                "deletion_time",
                f"must not be before creation_time ({row.text('creation_time')}), got {row.text('deletion_time')!r}",
            )
    models = frozenset(m for m in (s.strip() for s in row.text("gpu_spec").split("|")) if m)
    try:
        request = workload.PodRequest(
            name=pod_name,
            cpu_milli=row.whole("cpu_milli"),
            memory_mib=row.whole("memory_mib"),
            cards=cards,
            milli_per_card=milli,
            models=models,
        )
    except ValueError as exc:
        raise row.error(None, str(exc)) from None
    return scenario.TracePod(request=request, created=created, deleted=deleted)


def _header(file: str, reader: Any, expected: str) -> tuple[int, list[str]]:
    """The header line number and its column names; raises for an empty file."""
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                return reader.line_num, [cell.strip() for cell in row]
    except csv.Error as exc:
        raise inputs.InputError(file, f"malformed CSV: {exc}", line=reader.line_num) from None
    raise inputs.InputError(file, f"is empty; expected a header line with the columns {expected}")


def _check_columns(
    file: str, line: int, columns: Sequence[str], required: Sequence[str], optional: Sequence[str]
) -> None:
    known = set(required) | set(optional)
    expected = _columns(required) + (f" (optional: {_columns(optional)})" if optional else "")
    seen: set[str] = set()
    for column in columns:
        if column not in known:
            message = f"unknown column {column!r}; expected the columns {expected}"
            raise inputs.InputError(file, message, line=line, field=column)
        if column in seen:
            raise inputs.InputError(file, f"column {column!r} appears twice in the header", line=line, field=column)
        seen.add(column)
    for column in required:
        if column not in seen:
            message = f"required column {column!r} is missing; expected the columns {expected}"
            raise inputs.InputError(file, message, line=line, field=column)


def _rows(file: str, reader: Any, columns: Sequence[str]) -> Iterator[_Row]:
    """The data rows after the header, blank lines skipped; raises for a row of the wrong width."""
    width = len(columns)
    try:
        for cells in reader:
            if len(cells) != width:
                if not any(cell.strip() for cell in cells):
                    continue
                raise inputs.InputError(
                    file,
                    f"expected {width} fields ({_columns(columns)}), got {len(cells)}",
                    line=reader.line_num,
                )
            yield _Row(file, reader.line_num, dict(zip(columns, cells, strict=True)))
    except csv.Error as exc:
        raise inputs.InputError(file, f"malformed CSV: {exc}", line=reader.line_num) from None


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(columns)
