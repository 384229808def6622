"""The operator's handlers called directly, with a stand-in actuator: no API server, no kopf loop.

The kmock scenarios (tests/operator) run the same handlers for real, but a race there shows
only when the timing falls badly; here the order of events is set by the test.
"""

from __future__ import annotations

import asyncio
import types

import kopf
import pytest

from archipelago import handlers
from archipelago.api import labels


class Actuator:
    """Answers ``live_pods`` from a list of answers, one per call, and records every deletion."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.selectors: list[str] = []
        self.deleted: list[tuple[str, list[str], int | None]] = []

    async def live_pods(self, namespace: str, selector: str) -> list[str]:
        self.selectors.append(selector)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def delete_pods(self, namespace: str, pods: list[str], grace: int | None) -> int:
        self.deleted.append((namespace, list(pods), grace))
        return 0


def memo_for(actuator: Actuator) -> types.SimpleNamespace:
    scheduler = types.SimpleNamespace(actuator=actuator, wake=lambda: None)
    return types.SimpleNamespace(runtime=types.SimpleNamespace(scheduler=scheduler))


def remove(actuator: Actuator, body: dict) -> None:
    asyncio.run(handlers.remove_pods(namespace="team", name="llm", body=body, memo=memo_for(actuator)))


BODY = {"kind": "TrainingJob", "spec": {"checkpoint": {"gracePeriodSeconds": 20}}}


def test_a_pod_the_index_has_not_seen_is_deleted_and_the_finalizer_stays_until_a_look_finds_none():
    # The API server holds a pod created just before the deletion; the handler never asks the
    # pods index, so its lag cannot hide the pod.
    actuator = Actuator(["llm-worker-0"], [])

    with pytest.raises(kopf.TemporaryError) as looking_again:
        remove(actuator, BODY)

    assert actuator.deleted == [("team", ["llm-worker-0"], 20)]
    assert looking_again.value.delay == 1
    remove(actuator, BODY)  # the second look finds nothing: the handler returns, the finalizer goes
    assert actuator.deleted == [("team", ["llm-worker-0"], 20)]
    assert actuator.selectors == [f"{labels.JOB_NAME}=llm,{labels.JOB_KIND}=TrainingJob"] * 2


def test_a_failed_list_keeps_the_finalizer_and_looks_again_later():
    actuator = Actuator(RuntimeError("connection refused"), [])

    with pytest.raises(kopf.TemporaryError, match="could not be listed: connection refused") as looking_again:
        remove(actuator, BODY)

    assert looking_again.value.delay == 5 and actuator.deleted == []


def test_every_changing_handler_is_a_deletion_handler_so_none_needs_the_diff_base_never_stored():
    """handlers._NoDiffBase stores no last-handled spec: an on.create/update/resume handler added
    later would see every event as a creation. This fails first."""
    registered = handlers.registry._changing.get_all_handlers()  # private but stable since kopf 1.30
    assert registered and {h.reason for h in registered} == {kopf.Reason.DELETE}


def test_an_indexed_object_is_a_copy_without_managed_fields_or_kubectls_last_applied_spec():
    body = {
        "kind": "Node",
        "metadata": {
            "name": "n1",
            "labels": {"nvidia.com/gpu.product": "NVIDIA-H800"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "kept": "yes"},
            "managedFields": [{"manager": "kwok", "fieldsV1": {"f:status": {}}}],
        },
        "status": {"capacity": {"nvidia.com/gpu": "8"}},
    }
    (indexed,) = handlers.nodes_index(name="n1", body=body).values()
    assert indexed == {
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H800"}, "annotations": {"kept": "yes"}},
        "status": {"capacity": {"nvidia.com/gpu": "8"}},
    }
    indexed["status"]["capacity"]["nvidia.com/gpu"] = "0"
    assert body["status"]["capacity"]["nvidia.com/gpu"] == "8" and body["metadata"]["managedFields"], "a copy"
