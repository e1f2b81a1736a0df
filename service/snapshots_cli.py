"""`eventgraph snapshots status|prune --keep N`."""

from __future__ import annotations

import argparse
import asyncio

from eventstore.pool import create_pool
from eventstore.snapshots import SnapshotStore
from service.cli import SUBCOMMANDS
from service.database import asyncpg_dsn
from service.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="per aggregate type and state revision: snapshots, streams, newest")
    prune = actions.add_parser("prune", help="keep only the newest snapshots of each stream")
    prune.add_argument("--keep", type=int, required=True, help="snapshots to keep per stream (0: none)")


def _command(args: argparse.Namespace, settings: Settings) -> int:
    from service.bootstrap import prepare

    resolved = prepare(settings, with_redis=False)
    assert resolved.database_url
    if args.action == "prune" and args.keep < 0:
        print("eventgraph: --keep must be 0 or more")
        return 2
    return asyncio.run(_run(asyncpg_dsn(resolved.database_url), args))


async def _run(dsn: str, args: argparse.Namespace) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = SnapshotStore(pool)
        if args.action == "prune":
            print(f"deleted {await store.prune(args.keep)} snapshots; at most {args.keep} kept per stream")
            return 0
        rows = await store.status()
        print(f"{'aggregate':<12} {'revision':>8} {'snapshots':>10} {'streams':>8}  newest")
        for row in rows:
            newest = row.newest.isoformat(timespec="seconds") if row.newest else "-"
            print(f"{row.aggregate_type:<12} {row.revision:>8} {row.snapshots:>10} {row.streams:>8}  {newest}")
        if not rows:
            print("(no snapshots yet)")
        return 0
    finally:
        await pool.close()


SUBCOMMANDS.append(("snapshots", "aggregate snapshots: status, prune", _arguments, _command))
