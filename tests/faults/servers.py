"""A private PostgreSQL cluster and a private Redis that a fault test may restart or wipe."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import redis

from service.serving import free_port
from tests.private_postgres import cluster_binaries, cluster_user
from tests.relay_support import RedisProcess


def _wait_for_port(port: int, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class PrivatePostgres:
    """A PostgreSQL 15 cluster in ``work/pg`` on a free 127.0.0.1 port (trust auth)."""

    def __init__(self, work: Path) -> None:
        self.bin = cluster_binaries()
        self.user = cluster_user()
        self.pgdata = work / "pg"
        self.port = free_port()
        self.log = self.pgdata / "server.log"

    def url(self, database: str = "eventgraph") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def init(self) -> None:
        self.pgdata.mkdir(mode=0o700)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.parent.chmod(0o755)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w", "-t", "60", *extra, action)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """A fast shutdown (every connection dropped, transactions rolled back) and a start."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._ctl("stop", "-m", "immediate")


class PrivateRedis(RedisProcess):
    """A redis-server of our own without persistence: a restart comes back empty."""

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--save", "", "--appendonly", "no", "--logfile", str(self.data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)

    def hold_consumers(self) -> None:
        """Consumers fall behind: reading a group (XREADGROUP, XAUTOCLAIM) is refused while
        publishing (XADD) still works, so the stream holds entries no group has processed."""
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            client.execute_command("ACL", "SETUSER", "default", "-xreadgroup", "-xautoclaim")

    def restart_empty(self) -> None:
        """Everything the broker held is gone: streams, consumer groups, pending entries."""
        self.stop()
        self.start()
