"""When to take snapshots, and taking them off the request path.

A load starts from the newest usable snapshot (same aggregate type and state revision,
at or before the version or instant asked for) and folds only the events after it.
A snapshot is taken of committed state only: of an aggregate just loaded from the store
that had to fold more than `after_folding` events, or of the state an append just
committed when its stream crossed a multiple of `every` versions. The writer keeps the
latest state per stream and saves in batches from its own task; a failed write is
logged and forgotten (the next load folds a little more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from domain.aggregate import Aggregate
from domain.snapshots import UnusableSnapshot, capture, restore
from eventstore.snapshots import Snapshot, SnapshotStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotPolicy:
    after_folding: int = 100  # a load that folded more events than this is snapshotted
    every: int = 100  # and state is snapshotted each time its stream crosses a multiple of this

    def after_load(self, folded: int) -> bool:
        return folded > self.after_folding

    def after_append(self, before: int, after: int) -> bool:
        return self.every > 0 and before // self.every != after // self.every


CLOSE_TIMEOUT = 2.0  # seconds a stopping process gives pending snapshots

POLICIES: dict[str, SnapshotPolicy] = {}  # by aggregate type name; a type not here gets the default


class Snapshots:
    def __init__(self, store: SnapshotStore, default: SnapshotPolicy | None = None) -> None:
        self.store = store
        self._default = default or SnapshotPolicy()
        self._pending: dict[str, Aggregate] = {}  # stream id -> a private copy of committed state
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def policy(self, aggregate: Aggregate) -> SnapshotPolicy:
        return POLICIES.get(type(aggregate).__name__, self._default)

    async def restore_latest(
        self, aggregate: Aggregate, stream_id: str, *, to_version: int | None, until: datetime | None
    ) -> None:
        """Bring a new, empty `aggregate` to its newest usable snapshot, if there is one."""
        cls = type(aggregate)
        snapshot = await self.store.latest(
            stream_id, cls.__name__, cls.SNAPSHOT_REVISION, to_version=to_version, until=until
        )
        if snapshot is None:
            return
        try:
            restore(aggregate, snapshot.state)  # all or nothing: decoded before it is set
        except UnusableSnapshot as error:  # folded in full instead; a new snapshot follows
            log.warning("snapshot of %s at %d not used: %s", stream_id, snapshot.version, error)

    def loaded(self, aggregate: Aggregate, stream_id: str, folded: int) -> None:
        """`aggregate` is the stream's current stored state, after folding `folded` events."""
        if self.policy(aggregate).after_load(folded):
            self._keep(stream_id, aggregate)

    def committed(self, aggregate: Aggregate, stream_id: str, version_before: int) -> None:
        """`aggregate` is the state an append just committed to the stream."""
        if self.policy(aggregate).after_append(version_before, aggregate.version):
            self._keep(stream_id, aggregate)

    def _keep(self, stream_id: str, aggregate: Aggregate) -> None:
        self._pending[stream_id] = aggregate.snapshot()  # a copy: the caller's goes on changing
        self._wakeup.set()
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._write(), name="snapshot-writer")

    async def _write(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Save what is pending now (the writer does this as states come in)."""
        pending, self._pending = self._pending, {}
        snapshots = []
        for stream_id, aggregate in pending.items():
            try:
                state = capture(aggregate)
            except TypeError as error:
                log.warning("%s cannot be snapshotted: %s", stream_id, error)
                continue
            cls = type(aggregate)
            snapshots.append(
                Snapshot(stream_id, aggregate.version, cls.__name__, cls.SNAPSHOT_REVISION, state, aggregate.updated_at)
            )
        try:
            await self.store.save(snapshots)
        except Exception as error:  # the database away: the next load folds a little more
            log.warning("%d snapshots not saved: %r", len(snapshots), error)

    async def close(self) -> None:
        """Let the writer finish what it is saving and save what is pending, within
        CLOSE_TIMEOUT; then stop it (what is left is only a little more folding later)."""
        timeout = CLOSE_TIMEOUT
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.flush()
