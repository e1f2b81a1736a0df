"""Who runs what: each lease-holding session names its process, and runners share the leases.

A process's lease connections carry `application_name` "eventgraph-<role> <host>:<pid>".
PostgreSQL's own session list is then the register of live processes (a process that
dies loses its sessions and its leases in the same moment: no heartbeat to expire), and
pg_locks says which session holds which lease, so every process reads the same owners.

Sharing (`LeaseShare`): with P projections and N live runners, a runner takes a free
lease only while it holds fewer than ceil(P/N) and no other runner holds fewer;
one holding more than its share, or two more than the least loaded, gives one back
after `SHED_AFTER` rounds. A lease free for longer than `GRACE` rounds goes to any
runner under its share (the least loaded one may be unable to take it).
"""

from __future__ import annotations

import math
import os
import socket

import asyncpg

from readmodels.checkpoints import LEASE_NAMESPACE

PROCESS = f"{socket.gethostname()}:{os.getpid()}"
RUNNER_ROLE = "projections"
SHED_AFTER = 2  # rounds an excess must last before a lease is given back
GRACE = 3  # rounds a standby waits before it may take a lease the least loaded runner left

_PREFIX = "eventgraph-"

# Per live runner: how many projection leases its sessions hold.
_HOLDINGS = """
SELECT substr(a.application_name, length($2) + 1) AS process, count(DISTINCT l.objid) AS held
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.classid = $1::int::oid
WHERE a.datname = current_database() AND starts_with(a.application_name, $2)
GROUP BY 1
"""


def session_name(role: str, process: str = PROCESS) -> str:
    return f"{_PREFIX}{role} {process}"[:63]  # PostgreSQL keeps 63 bytes


def owner_of(application_name: str | None) -> str | None:
    """The "<host>:<pid>" a session named by `session_name` belongs to; None for others."""
    if not application_name or not application_name.startswith(_PREFIX) or " " not in application_name:
        return None
    return application_name.split(" ", 1)[1]


async def name_session(conn: asyncpg.Connection, role: str, process: str = PROCESS) -> None:
    """Name the session; and over TCP, have the server probe an idle peer after 2 s, so a
    holder whose host vanished (no FIN ever comes) loses its leases in about 4 s, not hours."""
    await conn.execute(
        "SELECT set_config('application_name', $1, false), set_config('tcp_keepalives_idle', '2', false),"
        " set_config('tcp_keepalives_interval', '1', false), set_config('tcp_keepalives_count', '2', false)",
        session_name(role, process),
    )


async def lease_holdings(conn: asyncpg.Connection) -> dict[str, int]:
    """Each live runner process and how many projection leases it holds."""
    prefix = f"{_PREFIX}{RUNNER_ROLE} "
    return {r["process"]: int(r["held"]) for r in await conn.fetch(_HOLDINGS, LEASE_NAMESPACE, prefix)}


class LeaseShare:
    """One runner's view of the sharing, refreshed every round from `lease_holdings`."""

    def __init__(self, process: str, projections: int) -> None:
        self.process = process
        self._projections = projections
        self.share = 0  # ceil(P/N) at the last round (0 before the first: take nothing)
        self._others_fewest: int | None = None  # the least another live runner holds
        self._excess_rounds = 0

    def refresh(self, holdings: dict[str, int], mine: int) -> bool:
        """Note a round's holdings (`mine`: what this runner holds now); True when this
        runner should give one lease back."""
        others = [held for process, held in holdings.items() if process != self.process]
        self.share = math.ceil(self._projections / (len(others) + 1))
        self._others_fewest = min(others, default=None)
        excess = mine > self.share or (self._others_fewest is not None and mine >= self._others_fewest + 2)
        self._excess_rounds = self._excess_rounds + 1 if excess else 0
        if self._excess_rounds >= SHED_AFTER:
            self._excess_rounds = 0
            return True
        return False

    def may_take(self, mine: int, rounds_waited: int) -> bool:
        if mine >= self.share:
            return False
        return self._others_fewest is None or mine <= self._others_fewest or rounds_waited >= GRACE
