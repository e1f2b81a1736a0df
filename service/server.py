"""`eventgraph serve`'s HTTP server: uvicorn, with the two bounds it lacks.

Slow clients: uvicorn waits as long as a client likes for the rest of a request
(a slowloris holds a connection with a header line a second), and for the first
byte of a new connection. `ReadTimeoutProtocol` gives each request a deadline:
its headers and body must arrive within `read_timeout` seconds of its first byte
(of the connection's opening, for the first request). Idle keep-alive
connections are uvicorn's own `timeout_keep_alive`.

Shutdown: on SIGTERM uvicorn stops accepting, closes WebSockets with 1012 and
waits for in-flight requests (bounded here by `timeout_graceful_shutdown`, half
the shutdown budget, then it cancels them), then runs the app's lifespan
shutdown (bounded by the app to less than the other half). A request cut at the
drain bound answers 503 SERVICE_UNAVAILABLE, not uvicorn's 500. Nothing bounds a
loop that is blocked or a task that ignores its cancellation, so
`BoundedServer` arms a watchdog thread at the first signal: when the budget is
spent, it writes one line and ends the process with `EXIT_SHUTDOWN_TIMED_OUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings

EXIT_SHUTDOWN_TIMED_OUT = 1
EXIT_STARTUP_FAILED = 3  # as uvicorn.run
DRAIN_SHARE = 0.5  # of the shutdown budget: in-flight requests and WebSockets
CLOSE_SHARE = 0.4  # of it: the app's lifespan shutdown (workers, pool); the rest is margin
CUT_JSON = (
    b'{"errors":[{"message":"the server is shutting down; retry",'
    b'"extensions":{"code":"SERVICE_UNAVAILABLE"}}]}'
)
CUT_START = {
    "type": "http.response.start",
    "status": 503,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(CUT_JSON)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ],
}
CUT_BODY = {"type": "http.response.body", "body": CUT_JSON}
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nRequest Timeout\n"
)


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus our bounds (an attribute, so it reaches `--workers` children)."""

    def __init__(self, app: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            app,
            http=ReadTimeoutProtocol,
            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=settings.shutdown_timeout * DRAIN_SHARE,  # type: ignore[arg-type]
            **kwargs,
        )
        self.read_timeout = settings.read_timeout
        self.shutdown_timeout = settings.shutdown_timeout

    def load(self) -> None:
        super().load()
        self.loaded_app = AnswerCutRequests(self.loaded_app)


class AnswerCutRequests:
    """At the drain bound uvicorn cancels the requests still running and answers those
    that had not started a response with a plain 500, the code for a bug. They are an
    outage: 503 SERVICE_UNAVAILABLE with Retry-After (a retry with the same
    idempotencyKey is safe; another instance, or this one restarted, will answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if scope["type"] == "http":
                # (a response already under way refuses a second start: nothing to add)
                with contextlib.suppress(Exception):
                    await send(CUT_START)
                    await send(CUT_BODY)
            raise


class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for reading each request."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._read_timeout: float = getattr(config, "read_timeout", 10.0)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_read_deadline()  # a connection's first request keeps the deadline it has

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm_read_deadline()

    def handle_websocket_upgrade(self) -> None:
        self._disarm_read_deadline()  # the WebSocket's own timeouts take over
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Still reading headers: no app is answering this request, so say why.
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        # Reading the body: the app sees a disconnect and answers nobody.
        self.transport.close()


class BoundedServer(uvicorn.Server):
    """uvicorn's server; after the first SIGTERM or SIGINT, the process ends within
    `shutdown_timeout` seconds whatever its tasks do."""

    config: ServerConfig

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self._watchdog: threading.Timer | None = None
        # uvicorn says once how many requests it cancelled at the drain bound; their
        # tracebacks ("Exception in ASGI application") would say nothing more.
        logging.getLogger("uvicorn.error").addFilter(_not_cancelled)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._watchdog is None:
            self._watchdog = threading.Timer(
                self.config.shutdown_timeout, _give_up, args=(self.config.shutdown_timeout,)
            )
            self._watchdog.daemon = True
            self._watchdog.start()


def _not_cancelled(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def _give_up(timeout: float) -> None:
    # Straight to the file descriptor: a stuck thread may hold the logging locks.
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    line = (
        f"{stamp} ERROR service.server: shutdown did not finish within {timeout:g} s"
        f" (EVENTGRAPH_SHUTDOWN_TIMEOUT); exiting with {EXIT_SHUTDOWN_TIMED_OUT}\n"
    )
    os.write(sys.stderr.fileno(), line.encode())
    os._exit(EXIT_SHUTDOWN_TIMED_OUT)


def serve(config: ServerConfig) -> int:
    """Runs the server (or `config.workers` of them) until a signal ends it; the exit code."""
    if config.workers > 1:
        # uvicorn's supervisor builds its own servers in the children: they get the read
        # timeout and the drain and lifespan bounds, not the watchdog.
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    server = BoundedServer(config)
    server.run()
    return 0 if server.started else EXIT_STARTUP_FAILED
