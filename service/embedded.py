"""Who uses the embedded servers: they stop when the last `eventgraph` process using them exits.

Each process that may use the embedded PostgreSQL or Redis under the data folder holds an
exclusive ``flock`` on its own file in ``<data_dir>/users/``. The kernel drops the lock when
the process ends in any way (kill -9 too), so a file whose lock can be taken belongs to a
process that is gone and does not count. On exit a process removes its file and, if no
other file is still locked, stops the embedded servers. ``<data_dir>/users.lock`` serializes
joining (before the servers start) with leaving (and stopping them), so a process that
starts while the last one is stopping finds them stopped and starts them again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

from service.embedded_redis import file_lock
from service.settings import Settings

log = logging.getLogger(__name__)

USERS = "users"


def uses_embedded(settings: Settings) -> bool:
    return not settings.database_url or not settings.redis_url


def _serialized(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    return file_lock(data_dir / "users.lock")


def _held(path: Path) -> bool:
    """True if a live process holds ``path``'s lock; a stale file is removed."""
    try:
        with open(path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            path.unlink(missing_ok=True)
            return False
    except FileNotFoundError:
        return False


def users(data_dir: Path) -> list[int]:
    """Pids of the live processes using the embedded servers under ``data_dir``."""
    folder = Path(data_dir) / USERS
    if not folder.is_dir():
        return []
    return sorted(int(path.stem) for path in folder.glob("*.pid") if path.stem.isdigit() and _held(path))


def _join(data_dir: Path) -> IO[str]:
    (data_dir / USERS).mkdir(parents=True, exist_ok=True)
    with _serialized(data_dir):
        handle = open(data_dir / USERS / f"{os.getpid()}.pid", "w")  # held for the process's life
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    return handle


def _leave(data_dir: Path, handle: IO[str]) -> None:
    with _serialized(data_dir):
        Path(handle.name).unlink(missing_ok=True)
        handle.close()
        others = users(data_dir)
        if others:
            log.info("embedded servers left running for %d other process(es): %s", len(others), others)
            return
        stop_embedded_servers(data_dir)


def stop_embedded_servers(data_dir: Path) -> None:
    from service.database import stop_embedded_postgres
    from service.embedded_redis import stop_embedded_redis

    if stop_embedded_redis(data_dir / "redis"):
        log.info("stopped the embedded Redis")
    if stop_embedded_postgres(data_dir):
        log.info("stopped the embedded PostgreSQL")


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def holding_embedded_servers(settings: Settings) -> Iterator[None]:
    """Counts this process as a user of the embedded servers while the block runs.

    SIGTERM and SIGINT become SystemExit so the block's exit runs (uvicorn, after its
    graceful shutdown, raises the signal again with the handler it found at start).
    """
    if not uses_embedded(settings):
        yield
        return
    data_dir = Path(settings.data_dir).resolve()
    handle = _join(data_dir)
    in_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGTERM, signal.SIGINT) if in_main_thread else ()
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _leave(data_dir, handle)
