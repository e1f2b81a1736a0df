"""The event store's Prometheus series (CONTRACT.md 7.7): what was appended, and how long
each append transaction took. Label values are event types only, a bounded set."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_APPENDED = Counter(
    "eventgraph_events_appended_total", "Events appended to the store, by type", ["type"]
)
APPEND_SECONDS = Histogram(
    "eventgraph_append_duration_seconds",
    "Append transactions (one group-commit batch each), from taking a connection to commit",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_by_type: dict[str, Counter] = {}
_observing = True  # EVENTGRAPH_METRICS=off: the request path observes nothing (and /metrics is not served)


def observe_metrics(on: bool) -> None:
    global _observing
    _observing = on


def observing() -> bool:
    return _observing


def count_appended(event_type: str, count: int = 1) -> None:
    child = _by_type.get(event_type)
    if child is None:  # labels() is a lock and a tuple lookup: once per type is enough
        child = _by_type[event_type] = EVENTS_APPENDED.labels(event_type)
    child.inc(count)
