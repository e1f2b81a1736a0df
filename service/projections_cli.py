"""`eventgraph projections run|status|rebuild NAME`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from eventstore import NOTIFY_CHANNEL
from eventstore.pool import create_pool
from readmodels.checkpoints import PROJECTIONS_CHANNEL
from readmodels.notices import Notices
from readmodels.rebuild import RebuildBusy, RebuildProgress, rebuild
from readmodels.status import projection_statuses
from service.cli import SUBCOMMANDS
from service.container import build_upcasters
from service.database import asyncpg_dsn
from service.module import Modules, load_modules
from service.projections import projection_runner
from service.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("run", help="follow every projection; with several processes each runs in one")
    actions.add_parser("status", help="each projection's checkpoint, lag and state")
    rebuild_parser = actions.add_parser(
        "rebuild", help="rebuild from position 0 into new tables, then swap them in (no downtime)"
    )
    known = load_modules(Settings.from_env().modules).projections
    rebuild_parser.add_argument("name", help=", ".join(cls.name for cls in known))
    rebuild_parser.add_argument("--batch-size", type=int, default=5000)


def _dsn(settings: Settings) -> str:
    from service.bootstrap import prepare

    resolved = prepare(settings, with_redis=False)
    assert resolved.database_url
    return asyncpg_dsn(resolved.database_url)


def _command(args: argparse.Namespace, settings: Settings) -> int:
    modules = load_modules(settings.modules)
    if args.action == "rebuild":
        try:
            modules.projection(args.name)
        except LookupError as error:
            print(f"eventgraph: {error}", file=sys.stderr)
            return 2
    dsn = _dsn(settings)
    action = {"run": _run, "status": _status, "rebuild": _rebuild}[args.action]
    return asyncio.run(action(dsn, args, modules))


async def _run(dsn: str, args: argparse.Namespace, modules: Modules) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
    try:
        print("eventgraph: following projections (Ctrl-C stops)", flush=True)
        await projection_runner(dsn, notices, modules.projections).run(stop)
    finally:
        await notices.close()
    return 0


async def _status(dsn: str, args: argparse.Namespace, modules: Modules) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        statuses = await projection_statuses(pool, [cls.name for cls in modules.projections])
    finally:
        await pool.close()
    print(f"{'NAME':<24} {'POSITION':>12} {'LAG':>10}  {'STATE':<12} OWNER")
    for s in statuses:
        line = f"{s.name:<24} {s.position:>12} {s.lag:>10}  {s.state:<12} {s.owner or '-'}"
        print(line + (f"  ({s.error})" if s.error else ""))
    return 0


def _bar(progress: RebuildProgress) -> None:
    share = progress.position / progress.head if progress.head else 1.0
    filled = int(share * 30)
    sys.stderr.write(
        f"\r{progress.projection} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%}"
        f" {progress.position:,}/{progress.head:,} {progress.rate:,.0f} events/s"
        f" ETA {progress.eta:4.0f}s "
    )
    if progress.done:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def _rebuild(dsn: str, args: argparse.Namespace, modules: Modules) -> int:
    try:
        final = await rebuild(
            dsn, modules.projection(args.name), build_upcasters(), batch_size=args.batch_size, on_progress=_bar
        )
    except RebuildBusy as error:
        print(f"eventgraph: {error}", file=sys.stderr)
        return 1
    print(
        f"rebuilt {final.projection}: {final.events:,} events to position {final.position:,}"
        f" in {final.elapsed:.1f} s ({final.rate:,.0f} events/s); swapped in"
    )
    return 0


SUBCOMMANDS.append(("projections", "run, inspect or rebuild the read-model projections", _arguments, _command))
