"""Background work a `serve` process runs beside the API (projections, relay, ...)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from eventstore.waiting import honour_cancellation, wait_set
from service.container import Services
from service.projections import run_projections
from service.relay import relay_worker
from service.saga.worker import saga_worker

log = logging.getLogger(__name__)

# A worker runs until `stop` is set; it must survive database hiccups on its own.
Worker = Callable[[Services, asyncio.Event], Awaitable[None]]

# A feature registers its worker here: (name, setting that enables it in serve, worker).
WORKERS: list[tuple[str, str, Worker]] = [
    ("projections", "run_projections", run_projections),
    ("outbox-relay", "run_relay", relay_worker),
    ("saga-consumers", "run_saga", saga_worker),
]


class BackgroundWorkers:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        settings = self._services.settings
        for name, setting, worker in WORKERS:
            if getattr(settings, setting, True):
                log.info("starting %s", name)
                self._tasks.append(asyncio.create_task(self._guard(name, worker), name=name))

    async def _guard(self, name: str, worker: Worker) -> None:
        while not self._stop.is_set():
            try:
                await worker(self._services, self._stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                honour_cancellation()
                log.exception("%s failed; restarting in 1 s", name)
                await wait_set(self._stop, 1.0)

    async def stop(self, grace: float = 5.0) -> None:
        """Ask the workers to stop, cancel those still busy after `grace` seconds, and return
        within a second more whatever they do (a worker stuck past its cancellation is
        named in the log and left to the process's exit)."""
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            log.info("%s still busy after %g s; cancelling it", task.get_name(), grace)
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=1.0)
            for task in stuck:
                log.error("%s did not end when cancelled", task.get_name())
