"""graphql-transport-ws, hardened: strawberry's handler with what it leaves out.

- auth from the `connection_init` payload (`{"authorization": "Bearer ..."}`); a missing
  or bad token closes the socket with 4403, and so does the token's expiry later on;
- a syntax error in one `subscribe` is an `error` message for that id, not a 4400 close
  of the whole socket with every other subscription on it;
- the server pings a socket that has been silent for `ws_ping_interval` (strawberry
  only answers pings; proxies drop idle sockets);
- each operation gets a fresh context (DataLoaders cache per operation, not per socket);
- too many operations on one socket, or a `subscribe` over the caller's rate limit: an
  `error` coded RATE_LIMITED for that id (the socket stays open);
- messages go out as text frames, as browsers' JSON.parse expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import jwt
import orjson
from graphql import ExecutionResult, GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.utils.aio import aclosing

from api.context import Context
from api.errors import error_code
from api.metrics import SUBSCRIPTIONS, WEBSOCKETS, observe_request
from api.persisted import DocumentRefused, persisted_hash
from api.ratelimit import RateLimited, RateLimiter, caller_of
from service.context import Principal
from service.logs import CORRELATION_ID
from service.settings import Settings
from service.tracing import operation_span

FORBIDDEN = 4403


def authorization_of(payload: object) -> object:
    """The init payload's `authorization`, whatever the key's case (clients send `Authorization`)."""
    if not isinstance(payload, dict):
        return None
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == "authorization":
            return value
    return None


def websocket_options(settings: Settings) -> dict[str, Any]:
    """The view's keyword arguments for WebSockets (only graphql-transport-ws is spoken)."""
    return {
        "subscription_protocols": (GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        "connection_init_wait_timeout": timedelta(seconds=settings.ws_init_timeout),
        "max_subscriptions_per_connection": settings.ws_max_subscriptions,
        "allowed_origins": settings.allowed_origins,
    }


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    context: Context

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._expiry: asyncio.Task[None] | None = None
        keepalive = asyncio.create_task(self._keepalive(), name="ws-keepalive")
        WEBSOCKETS.inc()
        try:
            await super().handle()
        finally:
            WEBSOCKETS.dec()
            for task in (keepalive, self._expiry):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _keepalive(self) -> None:
        interval = self.context.services.settings.ws_ping_interval
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self._last_sent
            if idle < interval:
                await asyncio.sleep(interval - idle)
            elif not self.connection_acknowledged:
                await asyncio.sleep(interval)  # the connection_init timeout deals with these
            else:
                try:
                    await self.send_message({"type": "ping"})
                except WebSocketDisconnected:
                    return

    async def send_message(self, message: Message) -> None:
        self._last_sent = asyncio.get_running_loop().time()
        await super().send_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        if not self.connection_init_received and not self.connection_timed_out:
            authorization = authorization_of(payload)
            authenticated = await self.view.authenticate(  # type: ignore[attr-defined]
                authorization if isinstance(authorization, str) else None
            )
            if not isinstance(authenticated, Principal):
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                await self.websocket.close(code=FORBIDDEN, reason="Forbidden: a valid bearer token is needed")
                return
            self.context.authenticated = authenticated
            self._expiry = asyncio.create_task(self._close_at_expiry(str(authorization)))
        await super().handle_connection_init(message)

    async def _close_at_expiry(self, authorization: str) -> None:
        """A socket lives no longer than its token: the client reconnects with a fresh one."""
        token = authorization.strip().partition(" ")[2].strip()
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")  # verified already
        if expires is None:
            return
        await asyncio.sleep(max(0.0, float(expires) - time.time()))
        with contextlib.suppress(WebSocketDisconnected):
            await self.websocket.close(code=FORBIDDEN, reason="Forbidden: the token has expired")

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            await self._refuse(message["id"], f"at most {limit} operations at once on one connection")
            return
        rate_limiter: RateLimiter | None = self.view.rate_limiter  # type: ignore[attr-defined]
        if self.connection_acknowledged and rate_limiter is not None:
            try:
                await rate_limiter.check(caller_of(self.context.authenticated, None))
            except RateLimited as refused:
                await self._refuse(message["id"], str(refused), retryAfter=refused.retry_after)
                return
        try:
            message = await self._with_document(message)
        except DocumentRefused as refused:
            error = GraphQLError(refused.message, extensions={"code": refused.code})
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        await super().handle_subscribe(message)

    async def _send_result_stream(self, operation: Operation[Context, None], result_source: Any) -> None:
        operation_type, name = self.view.operation_of(operation.query, operation.operation_name)  # type: ignore[attr-defined]
        CORRELATION_ID.set(self.context.correlation_id)  # this operation's task
        span = operation_span(operation_type, name, self.context.correlation_id, None)
        if operation_type == "subscription":  # a span for its start, not its lifetime
            with span:
                pass
            span = contextlib.nullcontext()
        with span:
            async with aclosing(_observed(operation_type, result_source)) as observed:
                await super()._send_result_stream(operation, observed)

    async def _with_document(self, message: SubscribeMessage) -> SubscribeMessage:
        """The message with its persisted document (APQ's hash, trusted documents' check)."""
        payload = message.get("payload")
        documents = self.view.documents  # type: ignore[attr-defined]
        if not self.connection_acknowledged or not isinstance(payload, dict):
            return message
        extensions = payload.get("extensions")
        sha256_hash = persisted_hash(extensions) if isinstance(extensions, dict) else None
        if sha256_hash is None and documents.trusted is None:
            return message
        query = payload.get("query")
        may_store = isinstance(self.context.authenticated, Principal)
        query = await documents.document(query if isinstance(query, str) else None, sha256_hash, may_store)
        return {**message, "payload": {**payload, "query": query}}

    async def _refuse(self, operation_id: str, message: str, **extensions: object) -> None:
        """An `error` coded RATE_LIMITED for one operation; the socket stays open."""
        error = GraphQLError(message, extensions={"code": "RATE_LIMITED", **extensions})
        await self.send_message({"id": operation_id, "type": "error", "payload": [error.formatted]})

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        return None  # a bad document fails its own operation, never the socket

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # strawberry's, with a context of the operation's own
        context = dataclasses.replace(self.context, loaders={}, consistency=[])
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except WebSocketDisconnected:
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise


async def _observed(operation_type: str, results: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """`results`, counting the operation once, at its first result (or its end); a
    subscription counts as active from its start until it ends, unless refused."""
    started = time.perf_counter()
    active = operation_type == "subscription"
    if active:
        SUBSCRIPTIONS.inc()
    counted = False
    try:
        async for result in results:
            if not counted:
                counted = True
                errors = result.errors if isinstance(result, ExecutionResult) else None
                observe_request(operation_type, error_code(errors[0])[0] if errors else "OK", time.perf_counter() - started)
                if active and errors and result.data is None:  # refused: it never streams
                    active = False
                    SUBSCRIPTIONS.dec()
            yield result
    finally:
        if active:
            SUBSCRIPTIONS.dec()
        if not counted:  # a subscription that ended before its first event
            observe_request(operation_type, "OK", time.perf_counter() - started)
