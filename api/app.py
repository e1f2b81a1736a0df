"""The ASGI application: GraphQL over HTTP and WebSocket, health, GraphiQL."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api import http
from api.auth import TokenVerifier, Unauthenticated
from api.context import Context
from api.graphiql import graphiql_html, graphiql_routes
from api.schema import build_schema
from api.websocket import TextWebSocketAdapter, TransportWSHandler, websocket_options
from service.container import Services
from service.settings import Settings
from service.workers import BackgroundWorkers

log = logging.getLogger(__name__)


_POST_ONLY = {"Allow": "POST"}
_OVER_GET = frozenset({OperationType.QUERY})
_OVER_POST = frozenset({OperationType.QUERY, OperationType.MUTATION})


def correlation_id_of(headers: Any) -> str:
    value = headers.get("x-correlation-id", "")
    return value if 0 < len(value) <= 200 else str(uuid.uuid4())


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = TextWebSocketAdapter

    def __init__(self, services_ref: dict[str, Services], settings: Settings, **kwargs: Any) -> None:
        super().__init__(build_schema(settings), **kwargs)
        self._services_ref = services_ref
        self._tokens = TokenVerifier(settings.jwt_secret or "")
        self._max_body = settings.max_body_bytes

    # --- GraphQL over HTTP: every refusal is a coded JSON error, never plain text or a 500.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        media_type = http.negotiate(Request(scope).headers.get("accept"))
        try:
            length = http.declared_length(scope["headers"])
            if length is not None and length > self._max_body:
                raise http.too_large(self._max_body)
            try:
                response = await self.run(Request(scope, http.limited_receive(receive, self._max_body)))
            except http.BodyTooLarge:
                raise http.too_large(self._max_body) from None
            except HTTPException as error:
                status = error.status_code
                allow = {"Allow": "GET, POST"} if status == 405 else None
                raise http.HTTPError(status, error.reason, headers=allow) from None
        except http.HTTPError as error:
            response = http.error_response(error, media_type)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        if not data or not data.strip():
            raise http.HTTPError(400, "The request body is empty: send JSON with a `query`.")
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise http.HTTPError(400, "The request body is not valid JSON.") from None
        if not isinstance(value, dict | list):
            raise http.HTTPError(400, "Expected a JSON object.")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            media = (request.content_type or "").partition(";")[0].strip().lower()
            if media != http.JSON:
                raise http.HTTPError(
                    415, f"Unsupported content type {media or '(none)'!r}: send application/json."
                )
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and not isinstance(data.operation_name, str | None):
            raise http.HTTPError(400, "`operationName` must be a string or null.")
        return data

    async def execute_single(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Plain HTTP runs queries (GET, POST) and mutations (POST); subscriptions have
        # the WebSocket. strawberry would also start a subscription here and fail inside.
        get = request_adapter.method == "GET"
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=_OVER_GET if get else _OVER_POST,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError:
            if get:
                message = "Only queries are allowed over GET; send mutations with POST."
                raise http.HTTPError(405, message, headers=_POST_ONLY) from None
            message = "Subscriptions are served over WebSocket (graphql-transport-ws) at this path."
            raise http.HTTPError(400, message) from None
        except CannotGetOperationTypeError as error:
            raise http.HTTPError(400, error.as_http_error_reason()) from None
        except MissingQueryError:
            raise http.HTTPError(400, "No GraphQL query found in the request.") from None

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.sub_response = sub_response
        sub_response.media_type = http.negotiate(request.headers.get("accept"))
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = process_result(result)
        if http.is_request_error(result.data, result.errors):
            data.pop("data", None)  # a request error has no data entry (spec 7.1.2)
            sub_response = request.state.sub_response
            if sub_response.media_type == http.GRAPHQL_RESPONSE:
                sub_response.status_code = 400
        return data

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = Response(
            self.encode_json(response_data),
            status_code=sub_response.status_code or 200,
            media_type=http.content_type(sub_response.media_type or http.JSON),
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

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
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_env() -> Starlette:
    """uvicorn factory for `eventgraph serve` (the CLI has resolved the URLs into the env)."""
    return create_app(Settings.from_env())
