"""`eventgraph projections ...` as real processes: status, rebuild, run with takeover."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from readmodels.checkpoints import LEASE_NAMESPACE
from service.container import Services
from tests.projection_helpers import aggregate_views, random_orders

REPO = Path(__file__).resolve().parent.parent
ENTRY = "from service.cli import main; raise SystemExit(main())"  # what the `eventgraph` script runs


def _env(dsn: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "EVENTGRAPH_JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
    }


async def _eventgraph(dsn: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, *args, cwd=REPO, env=_env(dsn, tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _start_runner(dsn: str, tmp_path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "projections", "run", cwd=REPO, env=_env(dsn, tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def _wait(condition, seconds: float) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_status_and_rebuild_commands(services: Services, dsn: str, tmp_path: Path) -> None:
    ids = await random_orders(services, 4)
    head = await services.events.head_position()
    code, out, _ = await _eventgraph(dsn, tmp_path, "projections", "status")
    assert code == 0 and out.splitlines()[1].split() == ["orders", "0", str(head), "stopped", "-"]
    code, out, err = await _eventgraph(dsn, tmp_path, "projections", "rebuild", "orders", "--batch-size", "10")
    assert code == 0, err
    assert "events/s" in err and "ETA" in err and "100.0%" in err
    assert out.startswith("rebuilt orders:") and f"to position {head}" in out
    assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
    code, _, err = await _eventgraph(dsn, tmp_path, "projections", "rebuild", "nope")
    assert code == 2 and "no projection named 'nope'" in err


async def test_a_killed_runner_process_is_replaced_by_the_other(services: Services, dsn: str, tmp_path: Path) -> None:
    async def leaseholders() -> int:
        return int(await services.pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = $1::int::oid AND objid = hashtext('orders')::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            LEASE_NAMESPACE,
        ))

    async def caught_up() -> bool:
        head = await services.events.head_position()
        return bool(await services.pool.fetchval(
            "SELECT position >= $1 FROM projection_checkpoints WHERE name = 'orders'", head
        ))

    first = await _start_runner(dsn, tmp_path)
    second = None
    try:
        await _wait(lambda: _is(leaseholders, 1), 30)
        second = await _start_runner(dsn, tmp_path)
        ids = await random_orders(services, 4)
        await _wait(caught_up, 30)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        ids += await random_orders(services, 3, seed=9)
        await _wait(caught_up, 10)  # the survivor took the lease (it retries every second)
        assert await leaseholders() == 1
        assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


async def _is(probe, value: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await probe() == value)
