"""The read side a process holds: queries, the wait for read-your-writes, statuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from eventstore import NOTIFY_CHANNEL
from eventstore.pool import Pool
from eventstore.replicas import ReadPools, read_pools
from readmodels.checkpoints import PROJECTIONS_CHANNEL, position_of
from readmodels.consistency import Consistency, ConsistencyWaiter
from readmodels.notices import Notices
from readmodels.order_queries import OrderReadModel
from readmodels.products import ProductReadModel
from readmodels.status import ProjectionStatus, projection_statuses
from readmodels.wallets import WalletReadModel


class ReadModels:
    """Queries read from replicas where configured (`reads`); waits, statuses and the
    LISTEN connection stay on the primary."""

    def __init__(self, pool: Pool, dsn: str, reads: ReadPools | None = None, projections: Sequence[str] = ()) -> None:
        self._pool = pool
        self._projections = list(projections)  # the names `statuses` reports
        self._reads = reads = reads or read_pools(pool)
        # One LISTEN connection per process, shared by waiters and the runner.
        self.notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
        self.orders = OrderReadModel(reads)
        self.products = ProductReadModel(reads)
        self.wallets = WalletReadModel(reads)
        self._waiter = ConsistencyWaiter(pool, self.notices)

    async def consistent_with(self, projection: str, position: int, within: float) -> Consistency:
        """Waits (on the primary) until `projection` has applied `position`, then picks
        where to read it: a replica whose checkpoint has reached it too (waiting briefly
        for one), else the primary. A wait that ran out of time reads from the primary."""
        outcome = await self._waiter.wait(projection, position, within)
        if not self._reads.replicas:
            return outcome
        if outcome.stale:
            return replace(outcome, source=self._pool)
        _, source = await self._reads.read(
            lambda pool: position_of(pool, projection), enough=lambda applied: applied >= position
        )
        return replace(outcome, source=source)

    async def statuses(self) -> list[ProjectionStatus]:
        return await projection_statuses(self._pool, self._projections)

    async def close(self) -> None:
        await self.notices.close()
