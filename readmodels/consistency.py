"""Read-your-writes: wait until a projection has applied a position, within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from domain.errors import InvalidInput
from eventstore.pool import Pool
from eventstore.waiting import wait_set
from readmodels.checkpoints import PROJECTIONS_CHANNEL, position_of
from readmodels.log import head_position
from readmodels.notices import Notices

POLL_INTERVAL = 0.1  # re-read the checkpoint this often when no notice comes


@dataclass(frozen=True)
class Consistency:
    projection: str
    requested: int
    applied: int
    # Where reads that must reflect `requested` go: a replica that has applied it, or
    # the primary (None: anywhere; set by ReadModels.consistent_with).
    source: Pool | None = field(default=None, compare=False)

    @property
    def stale(self) -> bool:
        return self.applied < self.requested


def pinned_source(waits: Sequence[Consistency], projection: str) -> Pool | None:
    """The source a read of `projection` must use after these waits (the furthest one's)."""
    pinned = [w for w in waits if w.projection == projection and w.source is not None]
    return max(pinned, key=lambda w: w.requested).source if pinned else None


class ConsistencyWaiter:
    def __init__(self, pool: Pool, notices: Notices) -> None:
        self._pool = pool
        self._notices = notices
        self._applied: dict[str, int] = {}  # highest checkpoint seen per projection
        notices.on(PROJECTIONS_CHANNEL, self._notified)

    def _notified(self, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if position.isdigit():
            self._note(name, int(position))

    def _note(self, name: str, position: int) -> int:
        # Checkpoints only move forward (a rebuild swaps in one that is further on).
        best = max(self._applied.get(name, 0), position)
        self._applied[name] = best
        return best

    async def wait(self, projection: str, position: int, within: float) -> Consistency:
        """Returns once `projection` has applied `position`, or `within` seconds passed."""
        applied = self._applied.get(projection, 0)
        if applied >= position:
            return Consistency(projection, position, applied)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        checked_head = False
        while True:
            notice = self._notices.next(PROJECTIONS_CHANNEL)
            applied = self._note(projection, await position_of(self._pool, projection))
            if applied < position and not checked_head:
                # A mutation's position is committed before it is returned: one past
                # the head never came from this log, and waiting for it is pointless.
                if position > await head_position(self._pool):
                    raise InvalidInput(f"consistentWith {position} is past the log's head")
                checked_head = True
            remaining = deadline - loop.time()
            if applied >= position or remaining <= 0:
                return Consistency(projection, position, applied)
            await wait_set(notice, min(remaining, POLL_INTERVAL))
            applied = self._applied.get(projection, 0)
            if applied >= position:
                return Consistency(projection, position, applied)
