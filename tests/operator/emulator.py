"""A Kubernetes API server for operator tests: kmock's KubernetesEmulator with the semantics we rely on.

kmock 0.8 keeps objects and serves discovery, get, list, watch, create, patch and delete. This
subclass keeps its discovery, routing and object store (``emulator.objects``) and replaces the
write path and the fetch, list and watch answers, closing the gaps that break kopf or would hide
product bugs (see the testing note). Writes bypass kmock's DSL reactions; reads still pass them.
kmock is pinned: this touches its internals.

Not emulated: namespaces need not exist, a pod deleted with a grace period goes at once (no
kubelet), strategic merge knows no ``$patch`` directives and replaces lists of scalars
(finalizers too), ``dryRun`` and ``limit``/``continue`` are ignored, no BOOKMARK events are sent.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
import datetime
import random
import string
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import aiohttp.web
import attrs
import kmock

from tests.operator import bodies, faults
from tests.operator.bodies import Body, error

Key = tuple[kmock.resource, str | None, str]
Validate = Callable[[str, Body], list[str]]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_CREATE_STATUS = {"pods": {"phase": "Pending"}, "namespaces": {"phase": "Active"}}  # what the server sets
_SERVER_OWNED = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


class Event(NamedTuple):
    rv: int
    resource: kmock.resource
    namespace: str | None
    type: str
    object: Body
    old: Body | None


@dataclasses.dataclass(frozen=True)
class Deletion:
    resource: str
    namespace: str | None
    name: str
    grace_period_seconds: int | None  # as the client asked; None: the server's default
    propagation_policy: str | None
    garbage_collected: bool = False


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    validate: Validate | None = None  # for custom resources: the whole object a write would store
    collect_garbage: bool = False  # off: a test sees whether the product deletes what it owns
    calls: list[faults.Call] = attrs.field(factory=list, init=False)
    deletions: list[Deletion] = attrs.field(factory=list, init=False)
    faults: faults.Faults = attrs.field(factory=faults.Faults, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    _events: list[Event] = attrs.field(factory=list, init=False)  # every write, in order: watches resume here
    _rv: int = attrs.field(default=0, init=False)
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)  # set, then replaced, on every write
    _closed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def add_custom_resource(self, group: str, version: str, plural: str, **info: Any) -> None:
        """Serve a custom resource with a status subresource and the verbs kopf needs (list, watch, patch)."""
        resource = kmock.resource(group, version, plural)
        self.resources[resource] = kmock.ResourceInfo(verbs=set(VERBS), subresources={"status"}, **info)
        self._custom.add(resource)

    def fail(
        self, method: str, resource: str, *, status: int = 500, name: str | None = None, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` matching requests (None: all) with ``status``; nothing is written."""
        self.faults.add(faults.Fault(method.upper(), resource, name, status, 0.0, times))

    def stall(
        self, method: str, resource: str, *, seconds: float, name: str | None = None, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` matching requests only after ``seconds``; a client may time out first."""
        self.faults.add(faults.Fault(method.upper(), resource, name, None, seconds, times))

    def count(self, method: str, resource: str, *, name: str | None = None, status: int | None = None) -> int:
        """How many ``method`` requests on ``resource`` came (with that name, answered with that status)."""
        calls = list(self.calls)
        return sum(
            (c.method, c.resource) == (method.upper(), resource)
            and name in (None, c.name)
            and status in (None, c.status)
            for c in calls
        )

    async def close(self) -> None:
        """End the watch streams and the stalls, so that the server stops at once."""
        self._closed.set()
        self._tick.set()

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        data = request.data if isinstance(request.data, dict) else {}
        name = request.name or (data.get("metadata") or {}).get("name")  # a create names its object in the body
        plural = request.resource.plural if request.resource else None
        call = faults.Call(
            request.method.value,
            request.url.path,
            plural,
            request.namespace,
            name,
            request.subresource,
            query=dict(request.url.query),
        )
        self.calls.append(call)
        try:
            response = await self._answer(request, self.faults.take(call.method, plural, name))
        except kmock.KubernetesError as e:
            call.status = e.status
            raise
        except Exception:
            call.status = 500
            raise
        call.status = response.status
        return response

    async def _answer(self, request: kmock.Request, fault: faults.Fault | None) -> aiohttp.web.StreamResponse:
        if fault is not None and fault.seconds:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for may swallow a cancel
                async with asyncio.timeout(fault.seconds):
                    await self._closed.wait()
        if fault is not None and fault.status is not None:
            raise error(fault.status, "injected by the test")
        if request.method == "GET" or request.resource is None or request.resource.plural is None:
            return await super(kmock.KubernetesEmulator, self)._handle(request)  # kmock's routing, not its writes
        try:
            body, status = self._write(request)
        finally:  # wake the watches, even if a collection delete or garbage collection stopped half-way
            self._tick.set()
            self._tick = asyncio.Event()
        return aiohttp.web.json_response(body, status=status)

    def _write(self, request: kmock.Request) -> tuple[Body, int]:
        resource, info, data = request.resource, self._info(request.resource), request.data
        namespace = request.namespace if info.namespaced else None
        if request.method == "POST" and request.name is None:
            return self._create(resource, info, namespace, data or {}), 201
        if request.method == "DELETE" and request.name is None:  # deletecollection, by the list's selectors
            match, options = bodies.selector(request.params), bodies.delete_options(data, request.params)
            chosen = [body for body in self._live(resource, namespace) if match(body)]
            keys = [(resource, body["metadata"].get("namespace"), body["metadata"]["name"]) for body in chosen]
            items = [self._delete(key, copy.deepcopy(body), options) for key, body in zip(keys, chosen, strict=True)]
            return {"kind": f"{info.kind}List", "metadata": {"resourceVersion": str(self._rv)}, "items": items}, 200
        key, sub = (resource, namespace, request.name), request.subresource
        current = self._get(key)
        if request.method == "DELETE" and sub is None:
            return self._delete(key, current, bodies.delete_options(data, request.params)), 200
        if request.method == "POST" and (resource.plural, sub) == ("pods", "eviction"):
            self._delete(key, current, (data or {}).get("deleteOptions") or {})
            return bodies.success(201), 201
        if request.method == "POST" and (resource.plural, sub) == ("pods", "binding"):  # in case anything binds
            if node := (current.get("spec") or {}).get("nodeName"):
                raise error(409, f'pod {key[2]} is already assigned to node "{node}"')
            bound = copy.deepcopy(current)
            bound.setdefault("spec", {})["nodeName"] = data["target"]["name"]
            self._commit(key, "MODIFIED", bound, current)
            return bodies.success(201), 201
        if request.method in ("PATCH", "PUT") and sub in (None, "status"):
            content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
            new = bodies.patched(current, request.method, content_type, data, strategic_ok=resource not in self._custom)
            return self._update(key, info, current, new, status_only=sub == "status"), 200
        raise error(405, f"{request.method} {resource.plural}/{sub} is not emulated")

    def _create(self, resource: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, data: Body) -> Body:
        body = copy.deepcopy(data)
        meta = body.setdefault("metadata", {})
        if info.namespaced and meta.get("namespace", namespace) != namespace:
            raise error(400, "the namespace of the provided object does not match the namespace sent on the request")
        if not meta.get("name") and meta.get("generateName"):  # kopf names its Events so
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if not meta.get("name"):
            raise error(422, "metadata.name: Required value: name or generateName is required", "Invalid")
        key = (resource, namespace, meta["name"])
        if key in self.objects and not self.objects[key].deleted:  # kmock's reasons are not Kubernetes' reasons
            raise error(409, f'{_what(resource)} "{key[2]}" already exists', "AlreadyExists", name=key[2])
        meta.pop("namespace", None)
        if info.namespaced:  # the client leaves it to the URL; kopf needs it in the body
            meta["namespace"] = namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)  # owner references need the uid
        if "status" in info.subresources and resource.plural != "nodes":  # a node may report its status at once
            body.pop("status", None)
            if resource.plural in _CREATE_STATUS:
                body["status"] = copy.deepcopy(_CREATE_STATUS[resource.plural])
        body["apiVersion"], body["kind"] = _api_version(resource), info.kind  # kopf.adopt copies them to owners
        self._check(resource, info, body)
        return self._commit(key, "ADDED", body, None)

    def _update(self, key: Key, info: kmock.ResourceInfo, current: Body, new: Body, *, status_only: bool) -> Body:
        version = current["metadata"]["resourceVersion"]
        if (new.get("metadata") or {}).get("resourceVersion", version) != version:  # optimistic concurrency
            raise error(409, "the object has been modified; please apply your changes to the latest version")
        if status_only:  # the status subresource writes the status alone
            new = {**copy.deepcopy(current), "status": new.get("status")}
        elif "status" in info.subresources:  # and the main resource everything but the status
            new["status"] = current.get("status")
        new = {k: v for k, v in new.items() if v is not None}
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta = new.setdefault("metadata", {})
        for field in _SERVER_OWNED:  # clients cannot change them
            meta.pop(field, None)
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        changed = bodies.essence(new) != bodies.essence(current)  # controllers compare it to observedGeneration
        meta["generation"] = current["metadata"]["generation"] + int(changed)
        meta["resourceVersion"] = version
        if new == current:  # a no-op write makes no version and no event, as on a real server
            return current
        self._check(key[0], info, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):  # its last finalizer is gone
            return self._remove(key, new, current)
        return self._commit(key, "MODIFIED", new, current)

    def _delete(self, key: Key, current: Body, options: Body, *, collected: bool = False) -> Body:
        meta, grace = current["metadata"], options.get("gracePeriodSeconds")
        for field, expected in (options.get("preconditions") or {}).items():
            if expected is not None and meta.get(field) != expected:
                raise error(
                    409, f"Precondition failed: {field} in precondition: {expected}, in object: {meta.get(field)}"
                )
        policy = options.get("propagationPolicy")
        self.deletions.append(Deletion(key[0].plural, key[1], key[2], grace, policy, collected))
        if not meta.get("finalizers"):
            return self._remove(key, copy.deepcopy(current), current)
        if meta.get("deletionTimestamp"):
            return current
        marked = copy.deepcopy(current)  # it stays until its finalizers are removed
        grace = (30 if key[0].plural == "pods" else 0) if grace is None else grace
        marked["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=grace)
        return self._commit(key, "MODIFIED", marked, current)

    def _remove(self, key: Key, body: Body, current: Body) -> Body:
        body = self._commit(key, "DELETED", body, current)
        if self.collect_garbage:  # background propagation: the dependents whose owners are all gone
            live = {obj["metadata"]["uid"] for obj in self._live(None, None)}
            for dependent, obj in list(self.objects.items()):
                owners = {ref.get("uid") for ref in (obj.last.raw["metadata"].get("ownerReferences") or [])}
                if not obj.deleted and body["metadata"]["uid"] in owners and not owners & live:
                    options = {"propagationPolicy": "Background"}
                    self._delete(dependent, copy.deepcopy(obj.raw), options, collected=True)
        return body

    def _commit(self, key: Key, type_: str, body: Body, old: Body | None) -> Body:
        self._rv += 1
        body["metadata"]["resourceVersion"] = str(self._rv)  # one increasing counter, as etcd's revision
        if key in self.objects:
            self.objects[key].history.append(body)
        else:
            self.objects[key] = body
        if type_ == "DELETED":
            self.objects[key].delete()
        self._events.append(Event(self._rv, key[0], key[1], type_, body, old))
        return body

    def _check(self, resource: kmock.resource, info: kmock.ResourceInfo, body: Body) -> None:
        if self.validate is None or resource not in self._custom:
            return
        if errors := self.validate(resource.plural, body):
            name = body["metadata"]["name"]
            message = f'{info.kind}.{resource.group} "{name}" is invalid: ' + "; ".join(errors)
            raise error(422, message, "Invalid", name=name, kind=info.kind, causes=[{"message": e} for e in errors])

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo:
        if resource not in self.resources:
            raise error(404, "the server could not find the requested resource")
        return self.resources[resource]

    def _get(self, key: Key) -> Body:
        if key not in self.objects or self.objects[key].deleted:
            raise error(404, f'{_what(key[0])} "{key[2]}" not found', name=key[2], kind=key[0].plural)
        return copy.deepcopy(self.objects[key].raw)

    def _live(self, resource: kmock.resource | None, namespace: str | None) -> list[Body]:
        return [
            obj.raw
            for (r, ns, _), obj in list(self.objects.items())
            if resource in (None, r) and namespace in (None, ns) and not obj.deleted
        ]

    async def _serve_fetch(self, request: kmock.Request) -> Body:
        namespace = request.namespace if self._info(request.resource).namespaced else None
        return self._get((request.resource, namespace, request.name))

    async def _serve_list(self, request: kmock.Request) -> Body:
        info, match = self._info(request.resource), bodies.selector(request.params)
        items = [body for body in self._live(request.resource, request.namespace) if match(body)]
        kind, meta = f"{info.kind}List", {"resourceVersion": str(self._rv)}  # kopf watches from this version
        return {"apiVersion": _api_version(request.resource), "kind": kind, "metadata": meta, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        self._info(request.resource)
        named = f"metadata.name={request.name}" if request.name else ""
        fields = ",".join(filter(None, [request.params.get("fieldSelector", ""), named]))
        match = bodies.selector({**request.params, "fieldSelector": fields})
        since = int(request.params.get("resourceVersion") or 0)
        initial = [] if since else [body for body in self._live(request.resource, request.namespace) if match(body)]
        since = since or self._rv  # the snapshot and its version are taken at once: no event slips between
        loop = asyncio.get_running_loop()
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        deadline = None if timeout is None else loop.time() + timeout
        yield b""  # send the headers now: kmock holds them until the first chunk
        for body in initial:
            yield {"type": "ADDED", "object": body}
        position = bisect.bisect_right(self._events, since, key=lambda event: event.rv)  # honour ?resourceVersion=
        while not self._closed.is_set():
            tick = self._tick
            for event in self._events[position:]:
                position += 1
                if type_ := _seen_as(event, request.resource, request.namespace, match):
                    yield {"type": type_, "object": event.object}
            if position < len(self._events):
                continue  # written while we yielded
            try:
                async with asyncio.timeout_at(deadline):
                    await tick.wait()
            except TimeoutError:
                return


def _seen_as(
    event: Event, resource: kmock.resource, namespace: str | None, match: Callable[[Body], bool]
) -> str | None:
    """The event type a watch with this selector sees: an object may enter or leave its selection."""
    if event.resource != resource or namespace not in (None, event.namespace):
        return None
    now, before = match(event.object), event.old is not None and match(event.old)
    if event.type == "MODIFIED" and now != before:
        return "ADDED" if now else "DELETED"
    return event.type if now else None


def _api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def _what(resource: kmock.resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
