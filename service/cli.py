"""The `eventgraph` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from eventstore.metrics import observe_metrics
from service.embedded import holding_embedded_servers
from service.logs import configure_logging
from service.settings import Settings
from service.tracing import configure_tracing, shutdown_tracing

Command = Callable[[argparse.Namespace, Settings], int]

# A feature adds its subcommand here: (name, help, add_arguments, run).
SUBCOMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]] = []


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service.bootstrap import prepare

    prepare(settings, with_redis=False)
    print("database migrated")
    return 0


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.bootstrap import embedded_servers, export, prepare
    from service.logs import log_config
    from service.server import ServerConfig, serve

    resolved = prepare(settings)
    export(resolved)
    for line in embedded_servers(settings, resolved):
        print(line, flush=True)
    print(f"eventgraph: http://{args.host}:{args.port}/graphql", flush=True)
    config = ServerConfig(
        "api.app:app_from_env",
        resolved,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=log_config(settings.log_format, args.log_level),
        # uvicorn formats each access line's fields before the logger drops it
        access_log=args.log_level in ("trace", "debug", "info"),
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        ws_ping_interval=None,  # graphql-transport-ws pings are the app's own
        ws_max_size=resolved.max_body_bytes,  # the HTTP body limit holds for WebSocket messages
    )
    with _metrics_shared_by(args.workers):
        return serve(config)


@contextlib.contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """With several workers, counters go to files that every worker's /metrics sums."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="eventgraph-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _token_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sub", required=True, help="the subject, e.g. cus_1")
    parser.add_argument("--role", required=True, choices=["customer", "staff", "service"])
    parser.add_argument("--ttl", type=int, default=24 * 3600, help="seconds the token lives (default one day)")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth import mint_token
    from service.bootstrap import jwt_secret

    if not 0 < args.ttl <= settings.jwt_max_ttl:
        print(f"--ttl must be 1 to {settings.jwt_max_ttl} (EVENTGRAPH_JWT_MAX_TTL)", file=sys.stderr)
        return 2
    secret = jwt_secret(settings)
    issuer, audience = settings.jwt_issuer, settings.jwt_audience
    print(mint_token(secret, args.sub, args.role, args.ttl, issuer=issuer, audience=audience))
    return 0


def _no_args(parser: argparse.ArgumentParser) -> None:
    pass


SUBCOMMANDS += [
    ("migrate", "run the database migrations", _no_args, _migrate),
    ("serve", "run the API (and, by default, projections and the relay)", _serve_args, _serve),
    ("token", "print a bearer token signed with the configured secret", _token_args, _token),
]


def _load_feature_commands() -> None:
    """Feature modules that add subcommands; imported here so the registry is complete."""
    import importlib

    for module in ("service.projections_cli", "service.relay_cli", "service.snapshots_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_format)
    configure_tracing()
    observe_metrics(settings.metrics)
    _load_feature_commands()
    parser = argparse.ArgumentParser(prog="eventgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        command_parser = sub.add_parser(name, help=help_text)
        add_arguments(command_parser)
        command_parser.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        with holding_embedded_servers(settings):  # the last process out stops them
            return int(args.run(args, settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    raise SystemExit(main())
