"""What the orders projection costs per event, in the database and in the process (issue 18).

    python -m benchmarks.orders_projection [--orders 1000] [--batch 100] [--passes 40] [--remember-lines N]

On a scratch database (DATABASE_URL's server, else the embedded one): `--orders` orders are
created, then `--passes` passes of addItem events are applied through the projection in
batches of `--batch` events on as many distinct orders (each pass adds a new sku to every
order, so orders grow to `--passes` lines), each batch in its own transaction, as the
runner applies them under addItem load. Prints the CPU per event of the PostgreSQL
backend (read from /proc: the server must be on this machine) and of this process, and the
backend's over the first and the last quarter of the passes (how it grows with the orders).
Each committed batch is reported to the projection, as the runner does, so it remembers the
rows it wrote (readmodels/orders.py); `--remember-lines 0` measures it loading every row.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from pathlib import Path

from benchmarks._db import drop_database, scratch_database
from benchmarks._serve import benchmark_arguments
from readmodels.orders import OrderProjection
from readmodels.projection import LogEvent
from readmodels.runner import projection_connection
from service.database import asyncpg_dsn


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, orders: int, batch: int, passes: int, remember_lines: int
) -> tuple[float, float, int, tuple[float, float]]:
    conn = await projection_connection(asyncpg_dsn(url))
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        projection, now, position = OrderProjection(remember_lines=remember_lines), datetime.datetime.now(datetime.UTC), 0

        def event(order: int, version: int, type_: str, data: dict[str, object]) -> LogEvent:
            nonlocal position
            position += 1
            return LogEvent(position, f"order-{order}", version, type_, data, now)

        created = {"customer_id": "cus_1", "currency": "USD"}
        for start in range(0, orders, batch):
            async with conn.transaction():
                await projection.apply(conn, [event(i, 1, "order.created.v2", created) for i in range(start, start + batch)])
            projection.committed()
        process, database, applied = time.process_time(), backend_cpu(pid), 0
        by_pass = []  # the backend's CPU after each pass: how the cost grows with the orders
        for pass_ in range(passes):
            item = {"item_id": f"S{pass_}", "quantity": 1, "price": "1.00", "discount": "0"}
            for start in range(0, orders, batch):
                events = [event(i, pass_ + 2, "item.added.v2", item) for i in range(start, start + batch)]
                async with conn.transaction():
                    await projection.apply(conn, events)
                projection.committed()
                applied += len(events)
            by_pass.append(backend_cpu(pid))
        quarter = max(passes // 4, 1)
        first = (by_pass[quarter - 1] - database) / (quarter * orders)
        last = (by_pass[-1] - by_pass[-quarter - 1]) / (quarter * orders) if passes > quarter else first
        return backend_cpu(pid) - database, time.process_time() - process, applied, (first, last)
    finally:
        await conn.close()


def main() -> int:
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--remember-lines", type=int, default=100_000)
    args = parser.parse_args()
    url, server = scratch_database()
    try:
        database, process, applied, (first, last) = asyncio.run(
            measure(url, args.orders, args.batch, args.passes, args.remember_lines)
        )
    finally:
        drop_database(server, url)
    quarter = max(args.passes // 4, 1)
    print(f"orders projection, {applied:,} addItem events in batches of {args.batch} on {args.orders:,} orders"
          f" (up to {args.passes} lines each): PostgreSQL {database * 1e6 / applied:.1f} µs per event,"
          f" this process {process * 1e6 / applied:.1f} µs per event; PostgreSQL's first {quarter} passes"
          f" {first * 1e6:.1f} µs per event, its last {quarter} {last * 1e6:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
