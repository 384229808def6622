"""Which recorded Event a new one repeats: client-go's event correlation, so a workload that waits
for many cycles shows one Event with a count, not one Event per cycle.

Two rules, both from ``k8s.io/client-go/tools/record/events_cache.go``:
- an Event identical to one recorded (same object, type, reason and message) increments that
  Event's ``count`` and ``lastTimestamp`` (``eventLogger``);
- once ``SIMILAR`` Events of one object, type and reason but different messages came within
  ``SIMILAR_WINDOW_S``, the later ones update a single Event whose message is prefixed
  ``(combined from similar events):`` (``EventAggregator``, whose defaults these are).

Pure: the caller creates or patches the Event the verdict names.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

SIMILAR = 10
"""Distinct messages of one object and reason within the window before they are combined."""
SIMILAR_WINDOW_S = 600.0
"""Seconds over which similar Events are counted."""
CACHE = 4096
"""Events remembered, least recently used forgotten first (client-go's ``maxLruCacheEntries``)."""
COMBINED = "(combined from similar events): "


@dataclasses.dataclass(frozen=True)
class Verdict:
    key: tuple[Any, ...]
    """The Event this one is, for ``recorded``."""
    message: str
    """The message to write (combined, when similar Events are aggregated)."""
    repeat: Recorded | None
    """The Event to patch, None to create one."""


@dataclasses.dataclass
class Recorded:
    name: str
    """The Event object's metadata.name."""
    count: int
    """Occurrences so far."""


class Correlator:
    def __init__(self) -> None:
        self._recorded: collections.OrderedDict[tuple[Any, ...], Recorded] = collections.OrderedDict()
        self._similar: collections.OrderedDict[tuple[Any, ...], dict[str, float]] = collections.OrderedDict()

    def verdict(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, now: float) -> Verdict:
        """What to write for an Event of ``type_``, ``reason`` and ``message`` on ``involved``
        (apiVersion, kind, namespace, name, uid) at ``now`` (seconds)."""
        target = (involved.get("kind"), involved.get("namespace"), involved.get("name"), involved.get("uid"))
        group = (*target, type_, reason)
        seen = self._similar.pop(group, {})
        seen = {m: at for m, at in seen.items() if at > now - SIMILAR_WINDOW_S}
        seen[message] = now
        self._similar[group] = seen
        _bound(self._similar)
        if len(seen) >= SIMILAR:
            key, message = (*group, COMBINED), COMBINED + message
        else:
            key = (*group, message)
        return Verdict(key, message, self._recorded.get(key))

    def recorded(self, verdict: Verdict, name: str) -> None:
        """The Event of ``verdict`` was written: created as ``name``, or its repeat patched."""
        if verdict.repeat is not None:
            verdict.repeat.count += 1
            self._recorded.move_to_end(verdict.key)
            return
        self._recorded[verdict.key] = Recorded(name, 1)
        _bound(self._recorded)

    def forget(self, verdict: Verdict) -> None:
        """The Event of ``verdict`` is gone from the API (expired): the next one creates it anew."""
        self._recorded.pop(verdict.key, None)


def _bound(cache: collections.OrderedDict) -> None:
    while len(cache) > CACHE:
        cache.popitem(last=False)
