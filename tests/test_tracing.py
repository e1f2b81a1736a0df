"""Traces (CONTRACT.md 7.7): one order's whole flow is one trace, continued from the
client's `traceparent` through the events' metadata; and spans leave over OTLP/HTTP to a
real receiver when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.auth import mint_token
from eventstore.tracing import enable_recording
from service.serving import ServeProcess
from service.tracing import configure_tracing
from tests.conftest import Api
from tests.test_saga_serve import SECRET, gql, order_status, served  # noqa: F401 - the fixture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter)
    yield exporter
    enable_recording(False)  # the process's provider stays; nothing records for other tests
    exporter.clear()


async def test_one_order_flow_is_one_trace(spans: InMemorySpanExporter, served: httpx.AsyncClient) -> None:  # noqa: F811
    http = served
    await gql(http, """mutation { registerProduct(input: {sku: "SKU-T", name: "Widget", price: "4.00",
        initialStock: 5}) { position } }""", {}, "staff_1", "staff")
    await gql(http, """mutation { depositFunds(input: {customerId: "cus_1", amount: "10.00"}) { position } }""",
              {}, "staff_1", "staff")
    await gql(http, """mutation { createOrder(input: {orderId: "ord_traced", customerId: "cus_1"}) { position } }""",
              {}, "cus_1", "customer")
    await gql(http, """mutation { addItem(input: {orderId: "ord_traced", sku: "SKU-T", quantity: 2,
        unitPrice: "4.00"}) { position } }""", {}, "cus_1", "customer")
    submitted = await gql(
        http, """mutation Submit { submitOrder(input: {orderId: "ord_traced"}) { position } }""", {},
        "cus_1", "customer", **{"x-correlation-id": "traced-flow", "traceparent": TRACEPARENT},
    )
    await order_status(http, "ord_traced", "COMPLETED", submitted["submitOrder"]["position"])

    def names() -> set[str]:
        return {s.name for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID}

    wanted = {
        "mutation Submit",
        "eventstore.append",
        "saga inventory order.submitted.v1",
        "saga payments inventory.reserved.v1",
        "saga ordering payment.charged.v1",
        "projection orders",
    }
    for _ in range(200):  # the last projection batch may finish after the read that saw it
        if wanted <= names():
            break
        await asyncio.sleep(0.05)
    assert wanted <= names(), names()
    assert any(name.endswith(" publish") for name in names())
    [operation] = [s for s in spans.get_finished_spans() if s.name == "mutation Submit"]
    assert operation.parent is not None and format(operation.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert operation.attributes == {
        "graphql.operation.type": "mutation",
        "graphql.operation.name": "Submit",
        "eventgraph.correlation_id": "traced-flow",
    }
    other = {s.name for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") != TRACE_ID}
    assert "saga inventory order.submitted.v1" not in other  # nothing of this flow strayed


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
    [access] = [line for line in lines if line["logger"] == "uvicorn.access" and "POST /graphql" in line["message"]]
    assert access["correlation_id"] == "otlp-1" and access["trace_id"] == TRACE_ID
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
