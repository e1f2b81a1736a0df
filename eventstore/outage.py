"""An outage is a state: logged once when it starts and once when it ends.

While PostgreSQL (or Redis) is down every request fails the same way; a traceback per
request told operators nothing new (~56 per node per outage were measured). Each
dependency gets one tracker per process, fed by whoever notices: a failed connect, a
dropped connection, a health check; and a success.
"""

from __future__ import annotations

import logging

log = logging.getLogger("eventgraph.outage")


class Outage:
    def __init__(self, dependency: str) -> None:
        self.dependency = dependency  # "database", "broker"
        self.reason: str | None = None  # why it is down; None while it is up

    @property
    def down(self) -> bool:
        return self.reason is not None

    def started(self, reason: str) -> None:
        if self.reason is None:
            log.warning("%s unavailable: %s", self.dependency, reason)
        self.reason = reason

    def ended(self) -> None:
        if self.reason is not None:
            self.reason = None
            log.info("%s available again", self.dependency)
