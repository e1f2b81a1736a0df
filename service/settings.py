"""Process configuration, read once from the environment and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: the embedded PostgreSQL under data_dir
    redis_url: str | None = None  # None: an embedded Redis where one can be had
    jwt_secret: str | None = None  # None: generated once and kept under data_dir
    data_dir: Path = field(default_factory=lambda: Path(".eventgraph"))
    service_name: str = "eventgraph"
    service_version: str = "0.1.0"
    introspection: bool = True
    consistency_timeout: float = 5.0  # seconds a `consistentWith` read waits
    max_body_bytes: int = 1024 * 1024
    max_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 5000
    pool_size: int = 10
    run_projections: bool = True  # inside `serve`
    run_relay: bool = True  # inside `serve`
    run_saga: bool = True  # inside `serve`: the saga's consumers (inventory, payments, ordering)
    outbox_retention_days: float = 7.0
    broker_stream: str = "eventgraph:events"  # the Redis stream the relay publishes to (contract: this one)
    subscription_buffer: int = 1000  # events queued per subscriber; past it, it reads the table
    subscription_poll_interval: float = 1.0  # seconds: the log is re-read this often without NOTIFY
    ws_init_timeout: float = 10.0  # seconds a WebSocket may take to send connection_init
    ws_ping_interval: float = 15.0  # seconds of silence before the server pings a WebSocket
    ws_max_subscriptions: int = 100  # operations in flight per WebSocket
    # Pages on these origins may open WebSockets ("*": any). Safe as "*": a socket's only
    # credential is the token in connection_init, never a cookie a browser adds by itself.
    allowed_origins: tuple[str, ...] = ("*",)
    metrics_token: str | None = None  # set: GET /metrics needs `Authorization: Bearer <it>`
    log_format: str = "text"  # text | json
    read_urls: tuple[str, ...] = ()  # streaming replicas for read-only queries (CONTRACT 7.9)
    read_pool_size: int = 10  # connections per replica
    replica_max_lag: float = 2.0  # seconds: a replica further behind gets no reads

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            jwt_secret=env.get("EVENTGRAPH_JWT_SECRET") or None,
            data_dir=Path(env.get("EVENTGRAPH_DATA_DIR", ".eventgraph")),
            service_name=env.get("EVENTGRAPH_SERVICE_NAME", "eventgraph"),
            introspection=env.get("EVENTGRAPH_INTROSPECTION", "1") not in ("0", "false", "no"),
            consistency_timeout=_float("EVENTGRAPH_CONSISTENCY_TIMEOUT", 5.0),
            max_body_bytes=_int("EVENTGRAPH_MAX_BODY_BYTES", 1024 * 1024),
            max_depth=_int("EVENTGRAPH_MAX_DEPTH", 15),
            max_aliases=_int("EVENTGRAPH_MAX_ALIASES", 30),
            max_tokens=_int("EVENTGRAPH_MAX_TOKENS", 5000),
            pool_size=_int("EVENTGRAPH_POOL_SIZE", 10),
            run_projections=env.get("EVENTGRAPH_RUN_PROJECTIONS", "1") not in ("0", "false", "no"),
            run_relay=env.get("EVENTGRAPH_RUN_RELAY", "1") not in ("0", "false", "no"),
            run_saga=env.get("EVENTGRAPH_RUN_SAGA", "1") not in ("0", "false", "no"),
            outbox_retention_days=_float("EVENTGRAPH_OUTBOX_RETENTION_DAYS", 7.0),
            broker_stream=env.get("EVENTGRAPH_BROKER_STREAM", "eventgraph:events"),
            subscription_buffer=_int("EVENTGRAPH_SUBSCRIPTION_BUFFER", 1000),
            subscription_poll_interval=_float("EVENTGRAPH_SUBSCRIPTION_POLL_INTERVAL", 1.0),
            ws_init_timeout=_float("EVENTGRAPH_WS_INIT_TIMEOUT", 10.0),
            ws_ping_interval=_float("EVENTGRAPH_WS_PING_INTERVAL", 15.0),
            ws_max_subscriptions=_int("EVENTGRAPH_WS_MAX_SUBSCRIPTIONS", 100),
            metrics_token=env.get("EVENTGRAPH_METRICS_TOKEN") or None,
            log_format=env.get("EVENTGRAPH_LOG_FORMAT", "text").strip().lower() or "text",
            read_urls=tuple(u.strip() for u in env.get("DATABASE_READ_URL", "").split(",") if u.strip()),
            read_pool_size=_int("EVENTGRAPH_READ_POOL_SIZE", 10),
            replica_max_lag=_float("EVENTGRAPH_REPLICA_MAX_LAG", 2.0),
            allowed_origins=tuple(
                o.strip() for o in env.get("EVENTGRAPH_ALLOWED_ORIGINS", "*").split(",") if o.strip()
            ),
        )
