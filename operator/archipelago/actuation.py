"""The only code that writes to the Kubernetes API: pods, Services, workload status and Events.

Every call runs the synchronous kubernetes client in a worker thread, so the operator's event
loop never blocks. Gang creation is all-or-nothing in effect: failed creations are retried,
and if the gang still cannot be made whole its pods are deleted again, so no half gang is
left running. Errors are returned or logged, never raised into the scheduling loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import kubernetes.client
from kubernetes.client import ApiException

from archipelago import api, config
from archipelago.api import resources

logger = logging.getLogger(__name__)

COMPONENT = "archipelago"
"""The Event source and the field manager of every write."""


@dataclasses.dataclass(frozen=True)
class Created:
    """The outcome of creating a gang: ``ok``, or the error and whether retrying can help."""

    ok: bool
    error: str = ""
    permanent: bool = False


class Actuator:
    def __init__(self, client: kubernetes.client.ApiClient, settings: config.Actuation | None = None) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.settings = settings or config.Actuation()
        self._slots = asyncio.Semaphore(self.settings.parallel)

    async def create_gang(self, pods: Sequence[dict[str, Any]]) -> Created:
        """Create every pod, or none: retry transient failures, then roll back what was made.

        A pod that already exists with the same gang attempt counts as created (an earlier
        try that timed out on the client but succeeded on the server).
        """
        results = await asyncio.gather(*(self._create(p) for p in pods))
        errors = [r for r in results if r is not None]
        if not errors:
            return Created(True)
        made = [p for p, r in zip(pods, results, strict=True) if r is None]
        await asyncio.gather(*(self._delete(p["metadata"]["namespace"], p["metadata"]["name"], 0) for p in made))
        permanent = any(e[1] for e in errors)
        return Created(False, f"{len(errors)} of {len(pods)} pods could not be created: {errors[0][0]}", permanent)

    async def ensure_service(self, service: dict[str, Any]) -> bool:
        """Create a Service unless it exists; False (logged) if that failed."""
        meta = service["metadata"]
        try:
            await self._call(self.core.create_namespaced_service, meta["namespace"], service)
            return True
        except ApiException as e:
            if e.status == 409:
                return True
            logger.warning("service %s/%s not created: %s", meta["namespace"], meta["name"], _brief(e))
        except Exception as e:  # noqa: BLE001 - DNS names are a convenience; the gang still runs
            logger.warning("service %s/%s not created: %s", meta["namespace"], meta["name"], _brief(e))
        return False

    async def live_pods(self, namespace: str, selector: str) -> list[str]:
        """Names of the pods matching the label ``selector`` that are not being deleted, read
        from the API server (not from a watch, which may lag). Raises ``ApiException``."""
        listed = await self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return [p.metadata.name for p in listed.items if not p.metadata.deletion_timestamp]

    async def delete_pods(self, namespace: str, names: Sequence[str], grace_s: int | None = None) -> int:
        """Delete pods with a grace period (None: the pod's own); returns how many deletions failed."""
        results = await asyncio.gather(*(self._delete(namespace, n, grace_s) for n in names))
        return sum(not ok for ok in results)

    async def patch_status(self, kind: resources.Kind, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch the status subresource of a workload or pool; False if it failed."""
        body = {"status": status}
        try:
            if kind.namespaced:
                call = self.custom.patch_namespaced_custom_object_status
                args: tuple = (api.GROUP, api.VERSION, namespace, kind.plural, name, body)
            else:
                call = self.custom.patch_cluster_custom_object_status
                args = (api.GROUP, api.VERSION, kind.plural, name, body)
            await self._call(call, *args)
            return True
        except ApiException as e:
            if e.status == 409:
                logger.info(
                    "status of %s %s/%s not written: changed since read; next cycle", kind.kind, namespace, name
                )
            else:
                logger.warning("status of %s %s/%s not written: %s", kind.kind, namespace, name, _brief(e))
            return False
        except Exception as e:  # noqa: BLE001 - a status write never stops the loop
            logger.warning("status of %s %s/%s not written: %s", kind.kind, namespace, name, _brief(e))
            return False

    async def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid)."""
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        namespace = involved.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call(self.core.create_namespaced_event, namespace, body)
        except Exception as e:  # noqa: BLE001 - an Event is best effort
            logger.info("event %s on %s not recorded: %s", reason, involved.get("name"), _brief(e))

    async def _create(self, pod: dict[str, Any]) -> tuple[str, bool] | None:
        """None once the pod exists; else (error, permanent) after the last attempt."""
        meta = pod["metadata"]
        error = ("", False)
        for attempt in range(self.settings.attempts):
            if attempt:
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                await self._call(self.core.create_namespaced_pod, meta["namespace"], pod)
                return None
            except ApiException as e:
                if e.status == 409 and await self._ours(pod):
                    return None
                error = (f"pod {meta['name']}: HTTP {e.status} {e.reason}: {_brief(e)}", _permanent(e.status))
                if error[1]:
                    return error
            except Exception as e:  # noqa: BLE001 - timeouts and broken connections are transient
                error = (f"pod {meta['name']}: {_brief(e)}", False)
        return error

    async def _ours(self, pod: dict[str, Any]) -> bool:
        """Whether the existing pod of that name is this very pod (same job, attempt and node)."""
        meta = pod["metadata"]
        try:
            existing = await self._call(self.core.read_namespaced_pod, meta["name"], meta["namespace"])
        except Exception:  # noqa: BLE001
            return False
        got = existing.metadata
        return (
            (got.labels or {}) == {**(got.labels or {}), **meta["labels"]}
            and (got.annotations or {}).get(api.labels.POD_ATTEMPT) == meta["annotations"].get(api.labels.POD_ATTEMPT)
            and existing.spec.node_name == pod["spec"]["nodeName"]
            and not got.deletion_timestamp
        )

    async def _delete(self, namespace: str, name: str, grace_s: int | None) -> bool:
        for attempt in range(self.settings.attempts):
            if attempt:
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                body = kubernetes.client.V1DeleteOptions(grace_period_seconds=grace_s, propagation_policy="Background")
                await self._call(
                    self.core.delete_namespaced_pod, name, namespace, body=body, grace_period_seconds=grace_s
                )
                return True
            except ApiException as e:
                if e.status == 404:
                    return True
                if _permanent(e.status):
                    break
            except Exception:  # noqa: BLE001 - transient
                pass
        logger.warning("pod %s/%s not deleted after %d attempts", namespace, name, self.settings.attempts)
        return False

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._slots:
            return await asyncio.to_thread(method, *args, _request_timeout=self.settings.timeout_s, **kwargs)


def _permanent(status: int | None) -> bool:
    """4xx other than conflicts and throttling: retrying the same request cannot help."""
    return status is not None and 400 <= status < 500 and status not in (409, 429)


def _brief(e: Exception) -> str:
    if isinstance(e, ApiException):
        return (e.body or e.reason or "")[:300] if isinstance(e.body, str) else str(e.reason)
    return f"{type(e).__name__}: {e}"[:300]
