"""Traces (CONTRACT.md 7.7): one order's whole flow is one trace, continued from the
client's `traceparent` through the events' metadata; and spans leave over OTLP/HTTP to a
real receiver when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.auth import mint_token
from service.serving import ServeProcess
from service.tracing import configure_tracing, stop_recording
from tests.conftest import Api
from tests.test_saga_serve import SECRET, gql, order_status, served  # noqa: F401 - the fixture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
UNSAMPLED_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
UNSAMPLED_TRACEPARENT = f"00-{UNSAMPLED_TRACE_ID}-b7ad6b7169203331-00"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, sampling.ALWAYS_ON)
    yield exporter
    stop_recording()  # nothing records for other tests
    exporter.clear()


FLOW = {
    "eventstore.append",
    "saga inventory order.submitted.v1",
    "saga payments inventory.reserved.v1",
    "saga ordering payment.charged.v1",
    "projection orders",
}


async def order_flow(http: httpx.AsyncClient, order_id: str, sku: str, **headers: str) -> None:
    """An order submitted with `headers` and completed by the saga."""
    await gql(http, f"""mutation {{ registerProduct(input: {{sku: "{sku}", name: "Widget", price: "4.00",
        initialStock: 5}}) {{ position }} }}""", {}, "staff_1", "staff")
    await gql(http, """mutation { depositFunds(input: {customerId: "cus_1", amount: "10.00"}) { position } }""",
              {}, "staff_1", "staff")
    await gql(http, f"""mutation {{ createOrder(input: {{orderId: "{order_id}", customerId: "cus_1"}}) {{ position }} }}""",
              {}, "cus_1", "customer")
    await gql(http, f"""mutation {{ addItem(input: {{orderId: "{order_id}", sku: "{sku}", quantity: 2,
        unitPrice: "4.00"}}) {{ position }} }}""", {}, "cus_1", "customer")
    submitted = await gql(
        http, f"""mutation Submit {{ submitOrder(input: {{orderId: "{order_id}"}}) {{ position }} }}""", {},
        "cus_1", "customer", **headers,
    )
    await order_status(http, order_id, "COMPLETED", submitted["submitOrder"]["position"])


async def names_in_trace(spans: InMemorySpanExporter, trace_id: str, wanted: set[str]) -> set[str]:
    """The names of the trace's spans, once `wanted` are among them (or after 10 s)."""
    def names() -> set[str]:
        return {s.name for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id}

    for _ in range(200):  # the last projection batch may finish after the read that saw it
        if wanted <= names():
            break
        await asyncio.sleep(0.05)
    return names()


async def test_one_order_flow_is_one_trace(spans: InMemorySpanExporter, served: httpx.AsyncClient) -> None:  # noqa: F811
    await order_flow(served, "ord_traced", "SKU-T", **{"x-correlation-id": "traced-flow", "traceparent": TRACEPARENT})
    names = await names_in_trace(spans, TRACE_ID, FLOW | {"mutation Submit"})
    assert FLOW | {"mutation Submit"} <= names, names
    assert any(name.endswith(" publish") for name in names)
    [operation] = [s for s in spans.get_finished_spans() if s.name == "mutation Submit"]
    assert operation.parent is not None and format(operation.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert operation.attributes == {
        "graphql.operation.type": "mutation",
        "graphql.operation.name": "Submit",
        "eventgraph.correlation_id": "traced-flow",
    }
    other = {s.name for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") != TRACE_ID}
    assert "saga inventory order.submitted.v1" not in other  # nothing of this flow strayed


async def test_a_flow_the_service_starts_is_one_trace_too(spans: InMemorySpanExporter, served: httpx.AsyncClient) -> None:  # noqa: F811
    # No traceparent: the trace starts here, its flags mark a random trace id (03), and
    # every hop (the projection included) still reads it as sampled.
    await order_flow(served, "ord_rooted", "SKU-R")
    [operation] = [s for s in spans.get_finished_spans() if s.name == "mutation Submit"]
    assert operation.parent is None
    trace_id = format(operation.context.trace_id, "032x")
    names = await names_in_trace(spans, trace_id, FLOW)
    assert FLOW <= names, names


async def test_an_unsampled_flow_records_nothing_and_its_events_carry_no_traceparent(
    served: httpx.AsyncClient, dsn: str  # noqa: F811
) -> None:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, sampling.ParentBased(sampling.ALWAYS_OFF))  # new traces dropped
    try:
        unsampled = f"00-{TRACE_ID}-00f067aa0ba902b7-00"  # a caller's trace, not sampled
        await order_flow(served, "ord_unsampled", "SKU-U", **{"x-correlation-id": "unsampled", "traceparent": unsampled})
        await asyncio.sleep(0.5)  # the projection's last batch, the relay's last publish
    finally:
        stop_recording()
    conn = await asyncpg.connect(dsn)
    try:
        events, traced = await conn.fetchrow(
            "SELECT count(*), count(metadata->>'traceparent') FROM events WHERE metadata->>'correlation_id' = 'unsampled'"
        )
    finally:
        await conn.close()
    assert events >= 4 and traced == 0  # submitted, reserved, charged, completed: none carries one
    assert exporter.get_finished_spans() == ()


class _EvenTraceIds(sampling.Sampler):
    """Keeps the traces whose id is even, and counts the questions about each id."""

    def __init__(self) -> None:
        self.asked: Counter[int] = Counter()

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> sampling.SamplingResult:
        self.asked[trace_id] += 1
        return sampling.SamplingResult(
            sampling.Decision.RECORD_AND_SAMPLE if trace_id % 2 == 0 else sampling.Decision.DROP
        )

    def get_description(self) -> str:
        return "even trace ids"


async def test_a_new_trace_is_sampled_on_the_id_it_gets(api: Api) -> None:
    exporter, sampler = InMemorySpanExporter(), _EvenTraceIds()
    configure_tracing(exporter, sampling.ParentBased(sampler))
    try:
        for _ in range(30):
            await api.gql("query Probe { __typename }")
    finally:
        stop_recording()
    probes = [s.context.trace_id for s in exporter.get_finished_spans() if s.name == "query Probe"]
    assert probes  # about half of them (none: once in 2**30 runs)
    # The operation's entry asked about an id and the SDK's span got that id (asked again):
    # a span with another id would have been sampled on a question about a different one.
    assert all(sampler.asked[trace_id] == 2 for trace_id in probes)
    assert len(probes) == sum(1 for trace_id in sampler.asked if trace_id % 2 == 0)


class _CountedRatio(sampling.TraceIdRatioBased):
    """The SDK's trace-id ratio, counting the ids it is asked about."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.asked: Counter[int] = Counter()

    def should_sample(self, parent_context: Any, trace_id: int, *args: Any, **kwargs: Any) -> sampling.SamplingResult:
        self.asked[trace_id] += 1
        return super().should_sample(parent_context, trace_id, *args, **kwargs)


async def test_a_trace_id_ratio_is_decided_by_its_bound_and_agrees_with_the_sdk(api: Api) -> None:
    """The default sampler's decision is made on the id's low 64 bits against the ratio's
    bound, without asking the sampler; a kept operation's SDK span asks it once more, on
    the same id, and must get the same answer (else the span would not record)."""
    exporter, sampler = InMemorySpanExporter(), _CountedRatio(0.5)
    configure_tracing(exporter, sampling.ParentBased(sampler))
    try:
        for _ in range(60):
            await api.gql("query Probe { __typename }")
    finally:
        stop_recording()
    kept = [s.context.trace_id for s in exporter.get_finished_spans() if s.name == "query Probe"]
    assert 0 < len(kept) < 60  # about half (all or none: twice in 2**60 runs)
    assert all(trace_id & sampler.TRACE_ID_LIMIT < sampler.bound for trace_id in kept)
    assert sampler.asked == Counter(kept)  # only the SDK asked, once per kept operation


class _Receiver(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        assert self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf"
        self.received.append(request)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_spans_go_out_over_otlp_http_and_json_logs_carry_the_ids(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
        "EVENTGRAPH_RUN_PROJECTIONS": "0",
        "EVENTGRAPH_RUN_RELAY": "0",
        "EVENTGRAPH_RUN_SAGA": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "EVENTGRAPH_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "serve.log"
    server = ServeProcess(env, log_path, "--log-level", "info", log_only=True)
    base = server.url
    try:
        server.wait_healthy()
        token = mint_token(SECRET, "cus_1", "customer")
        response = httpx.post(
            f"{base}/graphql",
            json={"query": 'mutation Create { createOrder(input: {customerId: "cus_1"}) { position } }'},
            headers={"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT, "x-correlation-id": "otlp-1"},
            timeout=10,
        )
        assert "errors" not in response.json(), response.text
        unsampled = httpx.post(  # the caller's trace, not sampled: no span, its id still in the log
            f"{base}/graphql",
            json={"query": "query Unsampled { __typename }"},
            headers={"traceparent": UNSAMPLED_TRACEPARENT, "x-correlation-id": "otlp-2"},
            timeout=10,
        )
        assert unsampled.json() == {"data": {"__typename": "Query"}}
    finally:
        server.terminate(within=30)  # a stopping process flushes what it batched
        receiver.shutdown()
    spans = {
        span.name: (span, resource)
        for request in _Receiver.received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    operation, resource = spans["mutation Create"]
    assert operation.trace_id.hex() == TRACE_ID
    service_names = [a.value.string_value for a in resource.resource.attributes if a.key == "service.name"]
    assert service_names == ["eventgraph"]
    append, _ = spans["eventstore.append"]
    assert append.trace_id.hex() == TRACE_ID and append.parent_span_id == operation.span_id

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = {
        line["correlation_id"]: line
        for line in lines
        if line["logger"] == "uvicorn.access" and "POST /graphql" in line["message"]
    }
    assert access.keys() == {"otlp-1", "otlp-2"}
    assert access["otlp-1"]["trace_id"] == TRACE_ID
    assert access["otlp-2"]["trace_id"] == UNSAMPLED_TRACE_ID
    assert "query Unsampled" not in spans
    assert any(line["logger"] == "uvicorn.error" and "Started server process" in line["message"] for line in lines)


async def test_websocket_operations_and_subscription_starts_have_spans(
    spans: InMemorySpanExporter, api: Api
) -> None:
    from tests.subscription_support import GraphQLWS

    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        await ws.subscribe("1", "subscription Watch { events { position } }")
        await ws.send({"id": "2", "type": "subscribe", "payload": {"query": "query Hello { __typename }"}})
        assert (await ws.receive("2"))["type"] == "next"
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["subscription Watch"].attributes["graphql.operation.type"] == "subscription"
    assert by_name["query Hello"].attributes["graphql.operation.name"] == "Hello"
