"""The API's Prometheus series and the `/metrics` endpoint (CONTRACT.md 7.7).

`operation_type` is query, mutation or subscription; a request refused before its
operation was known (a syntax error, a body that is not JSON) counts as `unknown`.
`code` is `OK` or the first error's contract code.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventstore.metrics import observing
from service import broker
from service.container import Services
from service.metrics import exposition, pool_state, replica_state, shared_state
from service.module import load_modules
from service.settings import Settings

REQUESTS = Counter(
    "eventgraph_graphql_requests_total", "GraphQL operations answered", ["operation_type", "code"]
)
REQUEST_SECONDS = Histogram(
    "eventgraph_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation (a subscription: until it started streaming)",
    ["operation_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SUBSCRIPTIONS = Gauge(
    "eventgraph_subscriptions_active", "Subscriptions streaming now", multiprocess_mode="livesum"
)
WEBSOCKETS = Gauge("eventgraph_websockets_open", "WebSockets open now", multiprocess_mode="livesum")

_requests: dict[tuple[str, str], Any] = {}
_seconds: dict[str, Any] = {}


def observe_request(operation_type: str, code: str, seconds: float) -> None:
    """One answered operation (children cached: labels() takes a lock and builds a key)."""
    if not observing():
        return
    counter = _requests.get((operation_type, code))
    if counter is None:
        counter = _requests[operation_type, code] = REQUESTS.labels(operation_type, code)
    histogram = _seconds.get(operation_type)
    if histogram is None:
        histogram = _seconds[operation_type] = REQUEST_SECONDS.labels(operation_type)
    counter.inc()
    histogram.observe(seconds)


def first_code(body: dict[str, Any]) -> str:
    """`OK`, or the code of a response body's first error."""
    errors = body.get("errors")
    if not errors:
        return "OK"
    return str((errors[0].get("extensions") or {}).get("code", "INTERNAL_SERVER_ERROR"))


def metrics_endpoint(settings: Settings, services: Callable[[], Services]) -> Callable[[Request], Any]:
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None
    redis_client = broker.redis_client(settings.redis_url) if settings.redis_url else None
    projections = [cls.name for cls in load_modules(settings.modules).projections]

    async def metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"errors": [{"message": "A metrics token is needed.", "extensions": {"code": "UNAUTHENTICATED"}}]},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        current = services()
        families = await shared_state(current.pool, projections, redis_client, current.settings.broker_stream)
        families += pool_state([current.pool])
        families += replica_state(current.reads.lags())
        return Response(exposition(families), media_type=CONTENT_TYPE_LATEST)

    return metrics
