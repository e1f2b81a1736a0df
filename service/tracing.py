"""OpenTelemetry set-up from the standard OTEL_* variables (CONTRACT.md 7.7).

With OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, spans are
batched and exported over OTLP/HTTP (protobuf); the sampler is the SDK's, from
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on). With
neither set, or OTEL_SDK_DISABLED=true, no SDK is installed and every span is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace

from eventstore.tracing import context_of, enable_recording, recording, tracer
from service.logs import TRACE_ID

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENDPOINTS)


def configure_tracing(exporter: object | None = None) -> bool:
    """Install the SDK with an OTLP/HTTP exporter (or `exporter`, for tests), once.
    True if spans now record."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

    if exporter is None and (recording() or not wanted()):
        return recording()  # configured once per process
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "eventgraph"}
        provider = TracerProvider(resource=Resource.create(attributes))
        trace.set_tracer_provider(provider)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing: exporting spans over OTLP/HTTP")
    else:
        assert isinstance(exporter, SpanExporter)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_recording()
    return True


def shutdown_tracing() -> None:
    """Flush what is batched (a process stopping)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


def operation_span(
    operation_type: str, operation_name: str | None, correlation_id: str, headers: Mapping[str, Any] | None
) -> AbstractContextManager[Any]:
    """The span of one GraphQL operation, continuing an incoming `traceparent`."""
    if not recording():
        return nullcontext()
    return _operation_span(operation_type, operation_name, correlation_id, headers)


@contextmanager
def _operation_span(
    operation_type: str, operation_name: str | None, correlation_id: str, headers: Mapping[str, Any] | None
) -> Iterator[Any]:
    name = f"{operation_type} {operation_name}" if operation_name else operation_type
    with tracer.start_as_current_span(
        name,
        context=context_of(headers),
        kind=trace.SpanKind.SERVER,
        attributes={
            "graphql.operation.type": operation_type,
            "graphql.operation.name": operation_name or "",
            "eventgraph.correlation_id": correlation_id,
        },
    ) as span:
        TRACE_ID.set(f"{span.get_span_context().trace_id:032x}")  # for the request's access line
        yield span
