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
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import kubernetes.client
from kubernetes.client import ApiException

from archipelago import api, config, events
from archipelago.api import resources

logger = logging.getLogger(__name__)

COMPONENT = "archipelago"
"""The Event source and the field manager of every write."""


@dataclasses.dataclass(frozen=True)
class Created:
    """The outcome of creating a gang: ``ok``, or the error and whether retrying can help; and
    the pods made, which on failure are being rolled back (they hold their cards until gone)."""

    ok: bool
    error: str = ""
    permanent: bool = False
    quota: bool = False
    """A namespace ResourceQuota refused a pod: the gang waits (not permanent) until it fits."""
    uids: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Pod name to the uid the API server gave it, for each pod made (kept or rolled back)."""


class Actuator:
    def __init__(self, client: kubernetes.client.ApiClient, settings: config.Actuation | None = None) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.policy = kubernetes.client.PolicyV1Api(client)
        self.settings = settings or config.Actuation()
        self._slots = asyncio.Semaphore(self.settings.parallel)
        self._events = events.Correlator()

    async def create_gang(self, pods: Sequence[dict[str, Any]]) -> Created:
        """Create every pod, or none: retry transient failures, then roll back what was made.

        A pod that already exists with the same gang attempt counts as created (an earlier
        try that timed out on the client but succeeded on the server). A pod a ResourceQuota
        refuses (HTTP 403, "exceeded quota") is not retried within the call; the gang waits.
        The roll-back deletes with each pod's own grace period, never 0: a forced deletion removes
        the object while a kubelet may already run the container, and its cards would look free.
        """
        results = await asyncio.gather(*(self._create(p) for p in pods))
        uids = {p["metadata"]["name"]: r for p, r in zip(pods, results, strict=True) if isinstance(r, str)}
        errors = [r for r in results if isinstance(r, _Refused)]
        if not errors:
            return Created(True, uids=uids)
        made = [p["metadata"] for p in pods if p["metadata"]["name"] in uids]
        await asyncio.gather(*(self._delete(m["namespace"], m["name"], None) for m in made))
        quota = [e for e in errors if e.quota]
        first = (quota or errors)[0]
        return Created(
            False,
            f"{len(errors)} of {len(pods)} pods could not be created: {first.message}",
            permanent=any(e.permanent for e in errors) and not quota,
            quota=bool(quota),
            uids=uids,
        )

    async def ensure_service(self, service: dict[str, Any]) -> bool:
        """Create a Service unless it exists, retrying transient failures (throttling, 5xx,
        timeouts) as pods are; False (logged) if that failed."""
        meta = service["metadata"]
        problem = ""
        async for _ in self._tries():
            try:
                await self._call(self.core.create_namespaced_service, meta["namespace"], service)
                return True
            except ApiException as e:
                if e.status == 409:
                    return True
                problem = _brief(e)
                if _permanent(e.status):
                    break
            except Exception as e:  # noqa: BLE001 - DNS names are a convenience; the gang still runs
                problem = _brief(e)
        logger.warning("service %s/%s not created: %s", meta["namespace"], meta["name"], problem)
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

    async def disrupt(self, namespace: str, pods: Sequence[Mapping[str, Any]], grace_s: int | None = None) -> Disrupted:
        """Remove running pods (a preemption's victims, a restarting gang): through the Eviction API
        those a PodDisruptionBudget selects, deleted the others; with grace ``grace_s`` (None: each
        pod's own).

        All or none: when the budgets' ``status.disruptionsAllowed`` cannot take the covered pods
        that still run, none is removed and ``blocked`` says which budget. (The API server checks each
        eviction alone; a gang half-evicted is lost whole.) When the budgets cannot be listed, every
        pod goes through the Eviction API and the API server enforces them one by one.
        """
        blocked, covered = _coverage(await self._budgets(namespace), pods)
        if blocked:
            return Disrupted(0, blocked)
        names = [p["metadata"]["name"] for p in pods]
        evict = names if covered is None else [n for n in names if n in covered]
        results = await asyncio.gather(
            *(self._evict(namespace, n, grace_s) for n in evict),
            *(self._delete(namespace, n, grace_s) for n in names if n not in evict),
        )
        refused = [r for r in results if isinstance(r, str)]
        return Disrupted(sum(r is False for r in results), refused[0] if refused else "")

    async def blocking(self, namespace: str, pods: Sequence[Mapping[str, Any]]) -> str:
        """Which disruption budget would keep ``disrupt`` from removing ``pods`` now; "" if none."""
        return _coverage(await self._budgets(namespace), pods)[0]

    async def _budgets(self, namespace: str) -> list[Any] | None:
        """The namespace's PodDisruptionBudgets; None when they cannot be read."""
        try:
            listed = await self._call(self.policy.list_namespaced_pod_disruption_budget, namespace)
        except Exception as e:  # noqa: BLE001 - the Eviction API still enforces every budget
            logger.warning("disruption budgets of %s not read (%s): evicting every pod", namespace, _brief(e))
            return None
        return [b for b in listed.items if b.spec.selector is not None]

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
        """Record a core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid); a repeat
        of a recorded one increments its ``count`` and ``lastTimestamp`` (see ``archipelago.events``)."""
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.isoformat().replace("+00:00", "Z")
        namespace = involved.get("namespace") or "default"
        verdict = self._events.verdict(involved, type_, reason, message[:1024], now.timestamp())
        if verdict.repeat is not None:
            patch = {"count": verdict.repeat.count + 1, "lastTimestamp": stamp, "message": verdict.message}
            try:
                await self._call(self.core.patch_namespaced_event, verdict.repeat.name, namespace, patch)
                self._events.recorded(verdict, verdict.repeat.name)
                return
            except ApiException as e:
                if e.status != 404:  # 404: expired (the API server keeps Events for --event-ttl, 1 h)
                    logger.info("event %s on %s not recorded: %s", reason, involved.get("name"), _brief(e))
                    return
                self._events.forget(verdict)
            except Exception as e:  # noqa: BLE001 - an Event is best effort
                logger.info("event %s on %s not recorded: %s", reason, involved.get("name"), _brief(e))
                return
        name = f"{involved['name']}.{uuid.uuid4().hex[:16]}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": verdict.message,
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._call(self.core.create_namespaced_event, namespace, body)
            self._events.recorded(dataclasses.replace(verdict, repeat=None), name)
        except Exception as e:  # noqa: BLE001 - an Event is best effort
            logger.info("event %s on %s not recorded: %s", reason, involved.get("name"), _brief(e))

    async def _create(self, pod: dict[str, Any]) -> str | _Refused:
        """The pod's uid once it exists; else why not, after the last attempt."""
        meta = pod["metadata"]
        error = _Refused("", False)
        async for _ in self._tries():
            try:
                made = await self._call(self.core.create_namespaced_pod, meta["namespace"], pod)
                return str(made.metadata.uid or "")
            except ApiException as e:
                if e.status == 409 and (uid := await self._ours(pod)) is not None:
                    return uid
                text = _brief(e)
                error = _Refused(
                    f"pod {meta['name']}: HTTP {e.status} {e.reason}: {text}",
                    _permanent(e.status),
                    quota=e.status == 403 and _QUOTA in text,
                )
                if error.permanent:
                    return error
            except Exception as e:  # noqa: BLE001 - timeouts and broken connections are transient
                error = _Refused(f"pod {meta['name']}: {_brief(e)}", False)
        return error

    async def _ours(self, pod: dict[str, Any]) -> str | None:
        """The uid of the existing pod of that name if it is this very pod (same job, attempt and node)."""
        meta = pod["metadata"]
        try:
            existing = await self._call(self.core.read_namespaced_pod, meta["name"], meta["namespace"])
        except Exception:  # noqa: BLE001
            return None
        got = existing.metadata
        same = (
            (got.labels or {}) == {**(got.labels or {}), **meta["labels"]}
            and (got.annotations or {}).get(api.labels.POD_ATTEMPT) == meta["annotations"].get(api.labels.POD_ATTEMPT)
            and existing.spec.node_name == pod["spec"]["nodeName"]
            and not got.deletion_timestamp
        )
        return str(got.uid or "") if same else None

    async def _delete(self, namespace: str, name: str, grace_s: int | None) -> bool:
        async for _ in self._tries():
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

    async def _evict(self, namespace: str, name: str, grace_s: int | None) -> bool | str:
        """True once evicted (or gone); the API server's message when a budget refuses (HTTP 429)."""
        body = kubernetes.client.V1Eviction(
            metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=kubernetes.client.V1DeleteOptions(grace_period_seconds=grace_s),
        )
        async for _ in self._tries():
            try:
                await self._call(self.core.create_namespaced_pod_eviction, name, namespace, body)
                return True
            except ApiException as e:
                if e.status == 404:
                    return True
                if e.status == 429 and _DISRUPTION in (e.body or ""):
                    return f"pod {name}: {_message(e)}"
                if _permanent(e.status):
                    break
            except Exception:  # noqa: BLE001 - transient
                pass
        logger.warning("pod %s/%s not evicted after %d attempts", namespace, name, self.settings.attempts)
        return False

    async def _tries(self) -> AsyncIterator[int]:
        """``settings.attempts`` tries of one request, the backoff slept before each retry (doubled each time)."""
        for attempt in range(self.settings.attempts):
            if attempt:
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            yield attempt

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._slots:
            return await asyncio.to_thread(method, *args, _request_timeout=self.settings.timeout_s, **kwargs)


_QUOTA = "exceeded quota"
"""What the ResourceQuota admission plugin says when it refuses an object (k8s.io/apiserver
pkg/admission/plugin/resourcequota: "exceeded quota: <name>, requested: ..., used: ..., limited: ...")."""


_DISRUPTION = "disruption budget"
"""In the API server's refusal of an eviction (pkg/registry/core/pod/storage/eviction.go:
"Cannot evict pod as it would violate the pod's disruption budget.")."""
_TERMINAL = ("Succeeded", "Failed")
"""Phases of pods the Eviction API removes whatever the budgets."""


@dataclasses.dataclass(frozen=True)
class Disrupted:
    """The outcome of ``Actuator.disrupt``: deletions that failed, and why a budget blocked it ("" if none)."""

    failed: int
    blocked: str = ""


def _coverage(budgets: Sequence[Any] | None, pods: Sequence[Mapping[str, Any]]) -> tuple[str, set[str] | None]:
    """Why ``budgets`` forbid removing ``pods`` ("" if they allow it), and the names of the pods they
    cover (None: unknown, the budgets could not be read)."""
    if budgets is None:
        return "", None
    covered: set[str] = set()
    for budget in budgets:
        selected = [p for p in pods if _selects(budget.spec.selector, p["metadata"].get("labels") or {})]
        running = [p for p in selected if (p.get("status") or {}).get("phase") not in _TERMINAL]
        allowed = (budget.status.disruptions_allowed or 0) if budget.status else 0
        if len(running) > allowed:
            return (
                f"PodDisruptionBudget {budget.metadata.name} allows {allowed} disruptions "
                f"and {len(running)} of its pods would go"
            ), covered
        covered |= {p["metadata"]["name"] for p in selected}
    return "", covered


def _selects(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a ``V1LabelSelector`` selects ``labels`` (an empty selector selects every pod)."""
    if any(labels.get(k) != v for k, v in (selector.match_labels or {}).items()):
        return False
    for term in selector.match_expressions or ():
        present, value = term.key in labels, labels.get(term.key)
        match term.operator:
            case "In":
                ok = present and value in term.values
            case "NotIn":
                ok = not present or value not in term.values
            case "Exists":
                ok = present
            case _:  # DoesNotExist
                ok = not present
        if not ok:
            return False
    return True


def _message(e: ApiException) -> str:
    """The ``message`` of a Status body, and its causes' (a refused eviction names the budget there)."""
    try:
        status = json.loads(e.body or "")
    except ValueError:
        return _brief(e)
    causes = "; ".join(c.get("message", "") for c in (status.get("details") or {}).get("causes") or ())
    return f"{status.get('message', '')} {causes}".strip()


@dataclasses.dataclass(frozen=True)
class _Refused:
    message: str
    permanent: bool
    quota: bool = False


def _permanent(status: int | None) -> bool:
    """4xx other than conflicts and throttling: retrying the same request cannot help."""
    return status is not None and 400 <= status < 500 and status not in (409, 429)


def _brief(e: Exception) -> str:
    if isinstance(e, ApiException):
        return (e.body or e.reason or "")[:300] if isinstance(e.body, str) else str(e.reason)
    return f"{type(e).__name__}: {e}"[:300]
