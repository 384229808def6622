"""Event correlation as client-go's: identical Events counted, a burst of similar ones combined."""

from __future__ import annotations

from archipelago import events

JOB = {"apiVersion": "archipelago.dev/v1alpha1", "kind": "TrainingJob", "namespace": "team", "name": "llm", "uid": "u1"}


def record(c: events.Correlator, message: str, now: float, *, reason: str = "Unschedulable", on=JOB) -> events.Verdict:
    verdict = c.verdict(on, "Warning", reason, message, now)
    c.recorded(verdict, verdict.repeat.name if verdict.repeat else f"event-{now}")
    return verdict


def test_an_identical_event_repeats_the_recorded_one_and_counts():
    c = events.Correlator()
    first = record(c, "needs 16 cards", 0.0)
    again = record(c, "needs 16 cards", 10.0)
    assert first.repeat is None
    assert again.repeat is not None and again.repeat.name == "event-0.0" and again.repeat.count == 2


def test_another_reason_message_or_object_is_a_new_event():
    c = events.Correlator()
    record(c, "needs 16 cards", 0.0)
    assert record(c, "needs 32 cards", 1.0).repeat is None
    assert record(c, "needs 16 cards", 2.0, reason="TopologyTooSmall").repeat is None
    assert record(c, "needs 16 cards", 3.0, on={**JOB, "uid": "u2"}).repeat is None
    assert record(c, "needs 16 cards", 4.0).repeat is not None


def test_the_tenth_distinct_message_in_ten_minutes_starts_one_combined_event():
    c = events.Correlator()
    made = [record(c, f"{i} of 16 cards free", float(i)) for i in range(events.SIMILAR - 1)]
    assert all(v.repeat is None for v in made)
    combined = record(c, "9 of 16 cards free", 9.0)
    later = record(c, "10 of 16 cards free", 10.0)
    assert combined.repeat is None and combined.message == events.COMBINED + "9 of 16 cards free"
    assert later.repeat is not None and later.message == events.COMBINED + "10 of 16 cards free"


def test_similar_events_spread_over_more_than_the_window_are_not_combined():
    c = events.Correlator()
    step = events.SIMILAR_WINDOW_S / (events.SIMILAR - 2)
    made = [record(c, f"{i} free", i * step) for i in range(3 * events.SIMILAR)]
    assert not any(v.message.startswith(events.COMBINED) for v in made)


def test_a_forgotten_event_is_created_anew():
    c = events.Correlator()
    record(c, "needs 16 cards", 0.0)
    verdict = c.verdict(JOB, "Warning", "Unschedulable", "needs 16 cards", 1.0)
    c.forget(verdict)
    assert c.verdict(JOB, "Warning", "Unschedulable", "needs 16 cards", 2.0).repeat is None


def test_the_cache_forgets_the_least_recently_used_first(monkeypatch):
    monkeypatch.setattr(events, "CACHE", 2)
    c = events.Correlator()
    for name in ("a", "b"):
        record(c, "m", 0.0, on={**JOB, "name": name})
    record(c, "m", 1.0, on={**JOB, "name": "a"})  # a used again: b is the oldest
    record(c, "m", 2.0, on={**JOB, "name": "c"})
    assert c.verdict({**JOB, "name": "a"}, "Warning", "Unschedulable", "m", 3.0).repeat is not None
    assert c.verdict({**JOB, "name": "b"}, "Warning", "Unschedulable", "m", 3.0).repeat is None
