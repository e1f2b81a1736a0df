"""`eventgraph relay` and `eventgraph saga`: the serve workers on their own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from service.cli import SUBCOMMANDS
from service.container import Services
from service.relay import relay_worker
from service.saga.worker import CLAIM_IDLE, saga_worker
from service.settings import Settings


def _run_worker(settings: Settings, worker: Callable[..., Awaitable[None]], **kwargs: Any) -> int:
    from service.bootstrap import prepare

    resolved = prepare(settings)
    if not resolved.redis_url:
        print("no REDIS_URL and no embedded Redis available: nothing to do")
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        services = await Services.start(resolved, resolved.database_url or "")
        try:
            await worker(services, stop, **kwargs)
        finally:
            await services.close()

    asyncio.run(main())
    return 0


def _no_args(parser: argparse.ArgumentParser) -> None:
    pass


def _saga_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--claim-idle", type=float, default=CLAIM_IDLE, help="seconds before a pending message is reclaimed"
    )


SUBCOMMANDS.append(
    ("relay", "publish the outbox to Redis Streams", _no_args, lambda a, s: _run_worker(s, relay_worker))
)
SUBCOMMANDS.append(
    (
        "saga",
        "run the saga's consumer (inventory, payments and ordering, one group)",
        _saga_args,
        lambda a, s: _run_worker(s, saga_worker, claim_idle=a.claim_idle),
    )
)
