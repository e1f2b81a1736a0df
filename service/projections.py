"""Projections as a background worker: inside `serve`, or alone (`eventgraph projections run`)."""

from __future__ import annotations

import asyncio

from readmodels.notices import Notices
from readmodels.registry import PROJECTIONS
from readmodels.runner import ProjectionRunner
from service.container import Services, build_upcasters


def projection_runner(dsn: str, notices: Notices) -> ProjectionRunner:
    return ProjectionRunner(dsn, [cls() for cls in PROJECTIONS], build_upcasters(), notices)


async def run_projections(services: Services, stop: asyncio.Event) -> None:
    """Follow every registered projection until `stop`; each runs in one process at a time."""
    await projection_runner(services.dsn, services.read_models.notices).run(stop)
