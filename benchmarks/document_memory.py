"""The server's memory under unique documents (CONTRACT 7.1: caches bounded in bytes).

    python -m benchmarks.document_memory [--documents 600] [--padding 900000] [--small 20000]

Starts a real `eventgraph serve` (1 worker) on a scratch database and prints its resident
memory before and after sending, without a token: `--documents` unique `{ __typename }`
documents padded with a `--padding`-character comment (the report of issue 12: 86 MB grew
to 1.15 GB when the caches counted entries), then `--small` unique small documents that
are all kept until the budget (`EVENTGRAPH_DOCUMENT_CACHE_BYTES`, default 64 MiB) is spent.
"""

from __future__ import annotations

import argparse
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks._serve import served


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def send(base: str, queries: Iterator[str]) -> int:
    """Sends each query once, 4 at a time; the number of answers that were not data."""
    local = threading.local()

    def one(query: str) -> bool:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, timeout=60)
        body = local.http.post("/graphql", json={"query": query}).json()
        return "errors" in body or not body.get("data")

    failed = 0
    with ThreadPoolExecutor(4) as pool:
        batches = iter(lambda: list(itertools.islice(queries, 16)), [])  # not all in memory at once
        for batch in batches:
            failed += sum(pool.map(one, batch))
    return failed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--padding", type=int, default=900_000)
    parser.add_argument("--small", type=int, default=20_000)
    args = parser.parse_args()
    comment = "#" + "x" * args.padding + "\n"
    with served(EVENTGRAPH_RUN_PROJECTIONS="0", EVENTGRAPH_RUN_RELAY="0", EVENTGRAPH_RUN_SAGA="0") as server:
        before = rss_mb(server.pid)
        print(f"before: {before:,.0f} MB")
        failed = send(server.base, (f"{comment}{{ a{i}: __typename }}" for i in range(args.documents)))
        padded = rss_mb(server.pid)
        print(
            f"after {args.documents} unique documents of {len(comment) / 1e6:.1f} MB: {padded:,.0f} MB"
            f" (+{padded - before:,.0f} MB; {failed} answers without data)"
        )
        failed = send(server.base, (f"{{ a{i}: __typename }}" for i in range(args.small)))
        small = rss_mb(server.pid)
        print(f"after {args.small} unique small documents: {small:,.0f} MB (+{small - before:,.0f} MB in all;"
              f" {failed} answers without data)")


if __name__ == "__main__":
    main()
