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


# The app's bounded contexts (service/module.py), in the order the schema lists their fields.
BUILT_IN_MODULES = ("api.orders:ORDERS", "api.inventory:INVENTORY", "api.inventory:PAYMENTS")


@dataclass(frozen=True)
class Settings:
    modules: tuple[str, ...] = BUILT_IN_MODULES  # "package.module:NAME" of each service.module.Module
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
    max_cost: int = 100_000  # CONTRACT 7.2
    document_cache_bytes: int = 64 * 1024 * 1024  # parsed/validated/planned documents, per process
    pool_size: int = 10
    pool_timeout: float = 5.0  # seconds a request waits for a pooled connection, then SERVICE_UNAVAILABLE
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
    metrics: bool = True  # off: no /metrics and nothing observed per request (to measure what they cost)
    metrics_token: str | None = None  # set: GET /metrics needs `Authorization: Bearer <it>`
    log_format: str = "text"  # text | json
    # Automatic persisted queries: seconds a document stays in the shared store (Redis, or
    # the database without Redis) after its last use there (0: no expiry).
    apq_ttl: float = 7 * 86400.0
    # A JSON object {sha256 hex: document}: when set, only those documents run.
    trusted_documents: Path | None = None
    read_timeout: float = 10.0  # seconds a client may take to send a request's headers and body
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    shutdown_timeout: float = 10.0  # seconds from SIGTERM to the process's exit, at most
    rate_limit_rps: float = 0.0  # requests per second per caller; 0: no limit
    rate_limit_burst: float | None = None  # None: twice the rate
    rate_limit_prefix: str = "eventgraph:ratelimit:"  # Redis keys of the shared budgets
    jwt_max_ttl: int = 604800  # seconds a token may live (`exp` minus `iat`, or minus now)
    jwt_issuer: str | None = None  # when set, tokens' `iss` must be this
    jwt_audience: str | None = None  # when set, tokens' `aud` must name this
    jwks_url: str | None = None  # a JSON Web Key Set for RS256 and ES256 tokens
    jwks_refetch_interval: float = 10.0  # seconds between fetches for unknown `kid`s (contract: 10)
    jwks_timeout: float = 5.0  # seconds a fetch of the key set may take
    read_urls: tuple[str, ...] = ()  # streaming replicas for read-only queries (CONTRACT 7.9)
    read_pool_size: int = 10  # connections per replica
    replica_max_lag: float = 2.0  # seconds: a replica further behind gets no reads

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            modules=BUILT_IN_MODULES + tuple(m.strip() for m in env.get("EVENTGRAPH_MODULES", "").split(",") if m.strip()),
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
            max_cost=_int("EVENTGRAPH_MAX_COST", 100_000),
            document_cache_bytes=_int("EVENTGRAPH_DOCUMENT_CACHE_BYTES", 64 * 1024 * 1024),
            pool_size=_int("EVENTGRAPH_POOL_SIZE", 10),
            pool_timeout=_float("EVENTGRAPH_POOL_TIMEOUT", 5.0),
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
            metrics=env.get("EVENTGRAPH_METRICS", "on").strip().lower() not in ("off", "0", "false", "no"),
            metrics_token=env.get("EVENTGRAPH_METRICS_TOKEN") or None,
            log_format=env.get("EVENTGRAPH_LOG_FORMAT", "text").strip().lower() or "text",
            apq_ttl=_float("EVENTGRAPH_APQ_TTL", 7 * 86400.0),
            trusted_documents=Path(env["EVENTGRAPH_TRUSTED_DOCUMENTS"]) if env.get("EVENTGRAPH_TRUSTED_DOCUMENTS") else None,
            read_timeout=_float("EVENTGRAPH_READ_TIMEOUT", 10.0),
            keep_alive_timeout=_float("EVENTGRAPH_KEEP_ALIVE_TIMEOUT", 5.0),
            shutdown_timeout=_float("EVENTGRAPH_SHUTDOWN_TIMEOUT", 10.0),
            read_urls=tuple(u.strip() for u in env.get("DATABASE_READ_URL", "").split(",") if u.strip()),
            read_pool_size=_int("EVENTGRAPH_READ_POOL_SIZE", 10),
            replica_max_lag=_float("EVENTGRAPH_REPLICA_MAX_LAG", 2.0),
            allowed_origins=tuple(
                o.strip() for o in env.get("EVENTGRAPH_ALLOWED_ORIGINS", "*").split(",") if o.strip()
            ),
            rate_limit_rps=_float("EVENTGRAPH_RATE_LIMIT_RPS", 0.0),
            rate_limit_burst=_float("EVENTGRAPH_RATE_LIMIT_BURST", 0.0) or None,
            rate_limit_prefix=env.get("EVENTGRAPH_RATE_LIMIT_PREFIX", "eventgraph:ratelimit:"),
            jwt_max_ttl=_int("EVENTGRAPH_JWT_MAX_TTL", 604800),
            jwt_issuer=env.get("EVENTGRAPH_JWT_ISSUER") or None,
            jwt_audience=env.get("EVENTGRAPH_JWT_AUDIENCE") or None,
            jwks_url=env.get("EVENTGRAPH_JWKS_URL") or None,
        )
