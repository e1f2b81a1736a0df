"""The ASGI application: GraphQL over HTTP and WebSocket, health, GraphiQL."""

from __future__ import annotations

import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from api.auth import TokenVerifier, Unauthenticated
from api.context import Context
from api.graphiql import graphiql_html, graphiql_routes
from api.http import GraphQLOverHTTP
from api.schema import build_schema
from api.websocket import TextWebSocketAdapter, TransportWSHandler, websocket_options
from service.container import Services
from service.settings import Settings
from service.workers import BackgroundWorkers

log = logging.getLogger(__name__)


def correlation_id_of(headers: Any) -> str:
    value = headers.get("x-correlation-id", "")
    return value if 0 < len(value) <= 200 else str(uuid.uuid4())


class GraphQLApp(GraphQLOverHTTP):
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = TextWebSocketAdapter

    def __init__(self, services_ref: dict[str, Services], settings: Settings, **kwargs: Any) -> None:
        super().__init__(build_schema(settings), **kwargs)
        self._services_ref = services_ref
        self._tokens = TokenVerifier(settings.jwt_secret or "")
        self.max_body_bytes = settings.max_body_bytes

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_html(request.url.path))

    def authenticate(self, authorization: str | None) -> Any:
        try:
            return self._tokens.principal(authorization)
        except Unauthenticated as error:
            return error

    async def get_context(self, request: Request | WebSocket, response: Response | None = None) -> Context:  # type: ignore[override]
        correlation_id = correlation_id_of(request.headers)
        if isinstance(response, Response):
            # echoed, so a client can quote it when reporting an error (the log has it)
            response.headers["X-Correlation-ID"] = correlation_id
        return Context(
            services=self._services_ref["services"],
            request=request,
            response=response,
            correlation_id=correlation_id,
            authenticated=self.authenticate(request.headers.get("authorization")),
        )


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """The app; with `services` given (tests), the caller owns their lifecycle."""
    if not settings.database_url and services is None:
        raise ValueError("create_app needs settings.database_url (the CLI resolves the embedded one)")
    services_ref: dict[str, Services] = {}
    graphql = GraphQLApp(services_ref, settings, **websocket_options(settings))
    # ErrorCodes logs each unexpected error once, with the correlation id; strawberry's own
    # logger would also log every client mistake (a bad token, a typo) as an ERROR.
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:
            services_ref["services"] = services
            yield
            return
        started = await Services.start(settings, settings.database_url or "")
        services_ref["services"] = started
        workers = BackgroundWorkers(started)
        workers.start()
        # The startup heap (modules, schema, pools) never becomes garbage: out of the
        # collector's reach, full collections stop re-walking it (~13 % of a request's CPU).
        gc.freeze()
        try:
            yield
        finally:
            await workers.stop()
            await started.close()

    async def healthz(request: Request) -> Response:
        try:
            await services_ref["services"].pool.fetchval("SELECT 1", timeout=2)
        except Exception as error:  # any failure to answer means unhealthy
            log.warning("health check failed: %r", error)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/graphql", graphql),  # any method: the view answers others with a coded 405
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        *graphiql_routes(),
    ]
    # Frontends on another origin: the only credential is the bearer token, never a cookie.
    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Accept", "X-Correlation-ID"],
        expose_headers=["X-Correlation-ID"],
        max_age=600,
    )
    return Starlette(routes=routes, lifespan=lifespan, middleware=[cors])


def app_from_env() -> Starlette:
    """uvicorn factory for `eventgraph serve` (the CLI has resolved the URLs into the env)."""
    return create_app(Settings.from_env())
