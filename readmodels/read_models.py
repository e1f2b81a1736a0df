"""The read side a process holds: queries, the wait for read-your-writes, statuses."""

from __future__ import annotations

from eventstore import NOTIFY_CHANNEL
from eventstore.pool import Pool
from readmodels.checkpoints import PROJECTIONS_CHANNEL
from readmodels.consistency import Consistency, ConsistencyWaiter
from readmodels.notices import Notices
from readmodels.order_queries import OrderReadModel
from readmodels.products import ProductReadModel
from readmodels.registry import PROJECTIONS
from readmodels.status import ProjectionStatus, projection_statuses
from readmodels.wallets import WalletReadModel


class ReadModels:
    def __init__(self, pool: Pool, dsn: str) -> None:
        self._pool = pool
        # One LISTEN connection per process, shared by waiters and the runner.
        self.notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
        self.orders = OrderReadModel(pool)
        self.products = ProductReadModel(pool)
        self.wallets = WalletReadModel(pool)
        self._waiter = ConsistencyWaiter(pool, self.notices)

    async def consistent_with(self, projection: str, position: int, within: float) -> Consistency:
        return await self._waiter.wait(projection, position, within)

    async def statuses(self) -> list[ProjectionStatus]:
        return await projection_statuses(self._pool, [cls.name for cls in PROJECTIONS])

    async def close(self) -> None:
        await self.notices.close()
