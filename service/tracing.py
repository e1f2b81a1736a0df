"""OpenTelemetry set-up from the standard OTEL_* variables (CONTRACT.md 7.7), and the span
of each GraphQL operation, where sampling is decided.

With OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, spans are
batched and exported over OTLP/HTTP (protobuf). The sampler is the SDK's, from
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG; unset, it is parent-based with a trace-id
ratio of DEFAULT_SAMPLER_RATIO for the traces this service starts (an incoming sampled
`traceparent` is always continued; README "Operating it" says why this ratio). With no
endpoint, or OTEL_SDK_DISABLED=true, no SDK is installed and every span is a no-op.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from compat.opentelemetry import root_sampler
from eventstore.tracing import TRACEPARENT, context_of, enable_recording
from service.logs import TRACE_ID

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SAMPLER_RATIO = 0.01  # of the traces this service starts, when OTEL_TRACES_SAMPLER is unset


def wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENDPOINTS)


# The trace id a new trace's sampling was decided on, for the SDK's span to carry.
_DECIDED_TRACE_ID: ContextVar[int] = ContextVar("eventgraph_decided_trace_id", default=0)


class _DecidedIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return _DECIDED_TRACE_ID.get() or super().generate_trace_id()


class _HashedOnce(Resource):
    """The process's resource, hashed once: the OTLP exporter groups each span it encodes
    by resource, and Resource's hash is a JSON dump of its attributes (~a fifth of the
    encoding's CPU with every operation traced)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


_TRACEPARENT = re.compile("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # W3C, version 00
_NO_PARENT = Context()  # an operation's span continues the caller's trace or starts one, never another span


class Operations:
    """Starts the span of an operation entering the service, if the sampler keeps it.

    A new trace's sampling is asked of the root sampler on a trace id drawn here, before
    any SDK span exists; a dropped operation then costs that question and nothing else
    (~1 µs; the SDK's `start_span` built a non-recording span and asked the parent-based
    sampler, ~7 µs, and every span below it did the same again). A kept one gets the SDK's
    span with that very trace id and no parent, so the SDK's sampler gives the same answer
    (a trace-id ratio decides on the id)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._root = root_sampler(provider.sampler)
        # A trace-id ratio (the default) keeps a trace when the id's low 64 bits are below
        # its bound: asked here directly, a dropped operation costs one random draw (~0.2
        # µs against ~3 µs for the sampler's result object and its parent lookup, ~2 % of
        # an order(id) read).
        self._bound = self._root.bound if isinstance(self._root, sampling.TraceIdRatioBased) else None
        self._tracer = provider.get_tracer("eventgraph")

    def start(
        self, name: str, headers: Mapping[str, Any] | None, attributes: Callable[[], Mapping[str, Any]]
    ) -> trace.Span | None:
        """The operation's span, or None when it is dropped (`attributes` is only called for a span)."""
        parent = context_of(headers)
        if parent is not None:  # the sampler looks at the caller's decision
            continued = self._tracer.start_span(name, parent, trace.SpanKind.SERVER, attributes())
            return continued if continued.is_recording() else None
        if self._bound is not None:
            low = random.getrandbits(64)
            if low >= self._bound:
                return None
            trace_id = (random.getrandbits(64) << 64 | low) or 1
        else:
            trace_id = random.getrandbits(128) or 1
            decision = self._root.should_sample(_NO_PARENT, trace_id, name, trace.SpanKind.SERVER, attributes())
            if not decision.decision.is_sampled():
                return None
        token = _DECIDED_TRACE_ID.set(trace_id)
        try:
            return self._tracer.start_span(name, _NO_PARENT, trace.SpanKind.SERVER, attributes())
        finally:
            _DECIDED_TRACE_ID.reset(token)


_operations: Operations | None = None  # while spans record in this process


def configure_tracing(exporter: object | None = None, sampler: sampling.Sampler | None = None) -> bool:
    """Install the SDK with an OTLP/HTTP exporter, once (or, for tests, a provider exporting
    to `exporter`, sampled by `sampler`). True if spans now record."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

    global _operations
    if exporter is None and (_operations is not None or not wanted()):
        return _operations is not None  # configured once per process
    if sampler is None and not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = sampling.ParentBased(sampling.TraceIdRatioBased(DEFAULT_SAMPLER_RATIO))
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "eventgraph"}
    provider = TracerProvider(  # sampler None: OTEL_TRACES_SAMPLER's
        resource=_HashedOnce(Resource.create(attributes)), sampler=sampler, id_generator=_DecidedIds()
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing: exporting spans over OTLP/HTTP, sampler %s", provider.sampler.get_description())
    else:
        assert isinstance(exporter, SpanExporter)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)  # other libraries' spans (the API allows one per process)
    _operations = Operations(provider)
    enable_recording(provider.get_tracer("eventgraph"))
    return True


def stop_recording() -> None:
    global _operations
    _operations = None
    enable_recording(None)


def shutdown_tracing() -> None:
    """Flush what is batched (a process stopping)."""
    if _operations is not None:
        _operations.provider.shutdown()


def operation_span(
    operation_type: str, operation_name: str | None, correlation_id: str, headers: Mapping[str, Any] | None
) -> AbstractContextManager[Any]:
    """The span of one GraphQL operation, continuing an incoming `traceparent`; a no-op
    when nothing records or the sampler drops this operation."""
    if _operations is None:
        return _untraced(headers)
    name = f"{operation_type} {operation_name}" if operation_name else operation_type

    def attributes() -> dict[str, Any]:
        return {
            "graphql.operation.type": operation_type,
            "graphql.operation.name": operation_name or "",
            "eventgraph.correlation_id": correlation_id,
        }

    started = _operations.start(name, headers, attributes)
    if started is None:
        return _untraced(headers)
    TRACE_ID.set(f"{started.get_span_context().trace_id:032x}")  # for the request's access line
    return trace.use_span(started, end_on_exit=True)


def _untraced(headers: Mapping[str, Any] | None) -> AbstractContextManager[Any]:
    """No span; the caller's trace id, if it sent one, still goes on the request's log lines."""
    traceparent = headers.get(TRACEPARENT) if headers else None
    if isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent):
        TRACE_ID.set(traceparent[3:35])
    return nullcontext()
