"""Trace context carried by events (CONTRACT.md 7.7): each new event's metadata keeps the
W3C `traceparent` of the sampled span that caused it, and whoever handles the event later
(the relay, a saga reaction, a projection) continues that trace from it.

Sampling is decided once, where work enters the service (service.tracing: a GraphQL
operation). An operation the sampler drops gets no span at all: nothing is attached to the
context, so every check below it (`span`, `with_traceparent`, `continued`) finds no
recording span and costs a context lookup; its events carry no traceparent, and their
later handlers record nothing either.

Without an SDK configured (service.tracing) nothing records and no traceparent is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"  # the metadata key, as the W3C header is named

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None  # the SDK's, while spans record (set by service.tracing)


def enable_recording(tracer: trace.Tracer | None) -> None:
    """Record spans with `tracer` (None: record nothing)."""
    global _tracer
    _tracer = tracer


def recording() -> bool:
    return _tracer is not None


def _recording_span() -> trace.Span | None:
    """The current span, if this work is sampled."""
    if _tracer is None:
        return None
    current = trace.get_current_span()
    return current if current.is_recording() else None


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
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
    """A span continuing the sampled trace in `carrier` (an event's metadata); a no-op
    context when the carrier's trace is not sampled or nothing records, so hot loops pay
    one check."""
    if _tracer is None or not carrier or not sampled(carrier.get(TRACEPARENT)):
        return nullcontext()
    return _tracer.start_as_current_span(name, context=context_of(carrier), kind=kind, attributes=attributes)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A child of the current span when that one records, else a no-op."""
    if _recording_span() is None:
        return nullcontext()
    assert _tracer is not None
    return _tracer.start_as_current_span(name, attributes=attributes)


def with_traceparent(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` with the current span's traceparent, when that span records (an
    unsampled flow's events carry none: nothing downstream would record them)."""
    current = _recording_span()
    if current is None:
        return metadata
    return {**metadata, TRACEPARENT: traceparent_of(current)}
