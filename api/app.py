"""The ASGI application: GraphQL over HTTP and WebSocket, health, GraphiQL."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError, get_operation_ast
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL

from api.auth import TokenVerifier, Unauthenticated
from api.context import Context
from api.graphiql import graphiql_html, graphiql_routes
from api.http import GraphQLOverHTTP, correlation_id_of
from api.metrics import metrics_endpoint
from api.operations import Operations
from api.persisted import PersistedDocuments, load_trusted_documents
from api.ratelimit import RateLimiter
from api.schema import ApiSchema, build_schema
from api.websocket import TextWebSocketAdapter, TransportWSHandler, websocket_options
from eventstore.metrics import observe_metrics
from service.container import Services
from service.context import Principal
from service.health import BrokerProbe, health
from service.metrics import process_stopped
from service.server import CLOSE_SHARE
from service.settings import Settings
from service.tracing import configure_tracing, shutdown_tracing
from service.workers import BackgroundWorkers

log = logging.getLogger(__name__)


class GraphQLOverWebSocket(GraphQL[Context, None]):
    """strawberry's view, for graphql-transport-ws only (HTTP is `GraphQLOverHTTP`)."""

    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = TextWebSocketAdapter

    def __init__(
        self,
        schema: ApiSchema,
        contexts: ContextFactory,
        documents: PersistedDocuments,
        rate_limiter: RateLimiter | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(schema.strawberry, graphql_ide=None, **kwargs)
        self._contexts = contexts
        self._parse = schema.guard.parse
        self.documents = documents  # for `subscribe` payloads (TransportWSHandler)
        self.rate_limiter = rate_limiter  # each `subscribe` spends a request of the caller's budget

    def operation_of(self, query: str, operation_name: str | None) -> tuple[str, str | None]:
        """The type (query, mutation, subscription; `unknown` for a document that names none)
        and the name of the operation a document runs."""
        try:
            operation = get_operation_ast(self._parse(query), operation_name)
        except GraphQLError:
            return "unknown", None
        if operation is None:
            return "unknown", None
        return operation.operation.value, operation.name.value if operation.name else None

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return await self._contexts(request.headers, correlation_id_of(request.headers))

    async def authenticate(self, authorization: str | None) -> Principal | Unauthenticated | None:
        """For `connection_init`, whose payload carries the token."""
        return await self._contexts.authenticate(authorization)


class ContextFactory:
    """Builds each request's (or operation's) context: the caller from its bearer token."""

    def __init__(self, services_ref: dict[str, Services], settings: Settings) -> None:
        self._services_ref = services_ref
        self._tokens = TokenVerifier.from_settings(settings)

    async def authenticate(self, authorization: str | None) -> Principal | Unauthenticated | None:
        try:
            return await self._tokens.principal(authorization)
        except Unauthenticated as error:
            return error

    async def __call__(self, headers: Any, correlation_id: str) -> Context:
        return Context(
            services=self._services_ref["services"],
            correlation_id=correlation_id,
            authenticated=await self.authenticate(headers.get("authorization")),
        )


GRAPHQL_PATH = "/graphql"
GRAPHQL_PATHS = frozenset({GRAPHQL_PATH, GRAPHQL_PATH + "/"})  # a typed trailing slash works too


def create_app(settings: Settings, services: Services | None = None) -> GraphQLFirst:
    """The app; with `services` given (tests), the caller owns their lifecycle."""
    if not settings.database_url and services is None:
        raise ValueError("create_app needs settings.database_url (the CLI resolves the embedded one)")
    services_ref: dict[str, Services] = {}
    observe_metrics(settings.metrics)
    schema = build_schema(settings)
    contexts = ContextFactory(services_ref, settings)
    documents = PersistedDocuments(
        schema.guard,
        lambda: services_ref["services"].documents,
        trusted=load_trusted_documents(settings.trusted_documents) if settings.trusted_documents else None,
        introspection=settings.introspection,
        max_document_bytes=settings.max_body_bytes,
    )
    rate_limiter = RateLimiter.from_settings(settings)
    over_http = GraphQLOverHTTP(
        Operations(schema),
        contexts,
        graphiql_html,
        documents,
        max_body_bytes=settings.max_body_bytes,
        rate_limiter=rate_limiter,
    )
    over_websocket = GraphQLOverWebSocket(schema, contexts, documents, rate_limiter, **websocket_options(settings))
    # ErrorCodes logs each unexpected error once, with the correlation id; strawberry's own
    # logger would also log every client mistake (a bad token, a typo) as an ERROR.
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:
            services_ref["services"] = services
            yield
            return
        configure_tracing()  # each worker process: its own exporter
        started = await Services.start(settings, settings.database_url or "")
        services_ref["services"] = started
        workers = BackgroundWorkers(started)
        workers.start()
        # The startup heap (modules, schema, pools) never becomes garbage: out of the
        # collector's reach, full collections stop re-walking it (~13 % of a request's CPU).
        gc.freeze()
        # A request's objects die by reference counting; young collections every 700
        # allocations mostly re-walk the objects of the 32 requests in flight (an addItem
        # costs ~7 % less CPU with 20,000).
        gc.set_threshold(20_000, 50, 100)
        try:
            yield
        finally:
            # Bounded: SIGTERM ends the process within settings.shutdown_timeout (service/server.py).
            try:
                async with asyncio.timeout(settings.shutdown_timeout * CLOSE_SHARE):
                    await workers.stop(grace=settings.shutdown_timeout * CLOSE_SHARE / 2)
                    await started.close()
            except TimeoutError:
                log.error("closing the workers and the pool took too long; exiting anyway")
            process_stopped()
            shutdown_tracing()

    broker = BrokerProbe(settings.redis_url)

    @contextlib.asynccontextmanager
    async def lifespan_closing_limits(app: Starlette) -> AsyncIterator[None]:
        try:
            async with lifespan(app):
                yield
        finally:
            if rate_limiter is not None:
                await rate_limiter.close()

    async def healthz(request: Request) -> Response:
        status, body = await health(services_ref["services"].pool, broker)
        return JSONResponse(body, status_code=status)

    routes = [WebSocketRoute(GRAPHQL_PATH, over_websocket), Route("/healthz", healthz), *graphiql_routes()]
    if settings.metrics:
        routes.append(Route("/metrics", metrics_endpoint(settings, lambda: services_ref["services"])))
    # Frontends on another origin: the only credential is the bearer token, never a cookie.
    cors = Middleware(
        Cors,
        allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Accept", "X-Correlation-ID"],
        expose_headers=["X-Correlation-ID", "Retry-After"],
        max_age=600,
    )
    site = Starlette(routes=routes, lifespan=lifespan_closing_limits, middleware=[cors])
    return GraphQLFirst(over_http, site)


class Cors(CORSMiddleware):
    """Starlette's CORS. A request without an Origin (no browser: most API traffic) gets
    only what Starlette's would add, `Vary: Origin`, without parsing every request and
    response header first (~10 µs a request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Origin")]
            await send(message)

        await self.app(scope, receive, varying)


class GraphQLFirst:
    """GraphQL over HTTP goes through the middleware the app declares (`site.user_middleware`,
    and what `add_middleware` adds) straight to its endpoint, which answers every failure
    itself; everything else (WebSocket, health, GraphiQL assets, lifespan) to the Starlette
    app. Starlette's router and its error and exception layers cost ~40 µs a request, a
    tenth of a small query; the declared middleware is what an operator adds and expects
    on every request."""

    def __init__(self, graphql_over_http: ASGIApp, site: Starlette) -> None:
        self.endpoint = graphql_over_http
        self.site = site
        self.graphql_over_http = self.declared_middleware_around(graphql_over_http)

    def declared_middleware_around(self, app: ASGIApp) -> ASGIApp:
        for cls, args, kwargs in reversed(self.site.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        """Starlette's `add_middleware`, for GraphQL over HTTP as for every other route."""
        self.site.add_middleware(middleware_class, *args, **kwargs)
        self.graphql_over_http = self.declared_middleware_around(self.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in GRAPHQL_PATHS:
            await self.graphql_over_http(scope, receive, send)
        else:
            await self.site(scope, receive, send)


def app_from_env() -> GraphQLFirst:
    """uvicorn factory for `eventgraph serve` (the CLI has resolved the URLs into the env)."""
    return create_app(Settings.from_env())
