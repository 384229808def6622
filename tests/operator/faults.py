"""The emulator's request log and the faults a test injects into its upcoming answers.

Tests run in the main thread while the emulator answers in its own thread, so the pending faults
are guarded by a lock; the log is only appended to, which is atomic for a list.
"""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass
class Call:
    """One request the emulator received, and the status it answered (None while a watch streams)."""

    method: str
    path: str
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int | None = None
    query: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Fault:
    """Spoil the next ``times`` requests that match: pause ``seconds``, then answer ``status`` (or normally)."""

    method: str
    resource: str
    name: str | None
    status: int | None
    seconds: float
    times: int | None  # None: every matching request, until cleared


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, method: str, resource: str | None, name: str | None) -> Fault | None:
        """The first pending fault for this request, used up by one; faults apply in the order added."""
        with self._lock:
            for fault in self._pending:
                if (fault.method, fault.resource) == (method, resource) and fault.name in (None, name):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._pending.remove(fault)
                    return fault
        return None
