"""Trace context carried by events (CONTRACT.md 7.7): each new event's metadata keeps the
W3C `traceparent` of the span that caused it, and whoever handles the event later (the
relay, a saga reaction, a projection) continues that trace from it.

Only the OpenTelemetry API is used here; without an SDK configured (service.tracing) every
span is a no-op and `current_traceparent` is None, so nothing is added to events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"  # the metadata key, as the W3C header is named

tracer = trace.get_tracer("eventgraph")
_propagator = TraceContextTextMapPropagator()
_recording = False  # an SDK exports spans (set by service.tracing)


def enable_recording(on: bool = True) -> None:
    global _recording
    _recording = on


def recording() -> bool:
    return _recording


def current_traceparent() -> str | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def sampled(traceparent: Any) -> bool:
    """Whether a W3C traceparent says its trace is sampled (only those get spans downstream)."""
    if not isinstance(traceparent, str) or len(traceparent) != 55:
        return False
    try:
        return int(traceparent[-2:], 16) & 1 == 1
    except ValueError:
        return False


def context_of(carrier: Mapping[str, Any] | None) -> Context | None:
    """The trace context of a `traceparent` in headers or event metadata, if any."""
    if not carrier or not isinstance(carrier.get(TRACEPARENT), str):
        return None
    return _propagator.extract({TRACEPARENT: carrier[TRACEPARENT]})


def continued(
    name: str,
    carrier: Mapping[str, Any] | None,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Any]:
    """A span continuing the trace in `carrier` (a new trace without one); a no-op context
    when nothing records, so hot loops pay one check."""
    if not _recording:
        return nullcontext()
    return tracer.start_as_current_span(name, context=context_of(carrier), kind=kind, attributes=attributes)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A child of the current span, or a no-op when nothing records."""
    if not _recording:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)


def with_traceparent(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` with the current span's traceparent, when one records."""
    if _recording:
        traceparent = current_traceparent()
        if traceparent:
            return {**metadata, TRACEPARENT: traceparent}
    return metadata


def traceparents(metadata_items: Iterator[Mapping[str, Any]]) -> list[str]:
    return [m[TRACEPARENT] for m in metadata_items if isinstance(m.get(TRACEPARENT), str)]
