"""Projections as a background worker: inside `serve`, or alone (`eventgraph projections run`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from readmodels.notices import Notices
from readmodels.projection import Projection
from readmodels.runner import ProjectionRunner
from service.container import Services, build_upcasters


def projection_runner(dsn: str, notices: Notices, projections: Sequence[type[Projection]]) -> ProjectionRunner:
    return ProjectionRunner(dsn, [cls() for cls in projections], build_upcasters(), notices)


async def run_projections(services: Services, stop: asyncio.Event) -> None:
    """Follow every registered projection until `stop`; each runs in one process at a time."""
    await projection_runner(services.dsn, services.read_models.notices, services.modules.projections).run(stop)
