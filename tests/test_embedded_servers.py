"""The embedded PostgreSQL and Redis stop when the last `eventgraph serve` using them exits."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.embedded import stop_embedded_servers, users
from tests.process_support import ServeProcess, environment_without_servers, pid_alive

Start = Callable[[], ServeProcess]


def embedded_pids(data_dir: Path) -> tuple[int, int]:
    """(postmaster pid, redis-server pid) from the servers' own pidfiles."""
    postgres = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    redis = int((data_dir / "redis" / "redis.pid").read_text().strip())
    return postgres, redis


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """`.eventgraph` in a scratch working directory (not under pytest's tmp_path: another
    pytest run resets that root to 0700, which the embedded server's own user then cannot
    traverse)."""
    work = Path(tempfile.mkdtemp(prefix="eventgraph-embedded-"))
    yield work / ".eventgraph"
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def start(data_dir: Path) -> Iterator[Start]:
    """Starts `serve` processes in the working directory, on the default data folder."""
    started: list[ServeProcess] = []

    def start_one() -> ServeProcess:
        served = ServeProcess(environment_without_servers(), data_dir.parent / f"serve-{len(started)}.log", cwd=data_dir.parent)
        started.append(served)
        served.wait_healthy()
        return served

    yield start_one
    for served in started:
        served.kill()
    stop_embedded_servers(data_dir)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_stops_the_embedded_servers_it_started(
    start: Start, data_dir: Path, stop_signal: signal.Signals
) -> None:
    served = start()
    postgres, redis = embedded_pids(data_dir)
    assert pid_alive(postgres) and pid_alive(redis)
    assert users(data_dir) == [served.pid]

    assert served.terminate(stop_signal) == 128 + stop_signal

    assert not pid_alive(postgres) and not pid_alive(redis)
    assert users(data_dir) == []
    output = served.output()
    assert f"PostgreSQL (embedded): postgresql://postgres@/eventgraph?host={data_dir / 'pg'}" in output
    assert f"data: {data_dir / 'pg'}" in output
    assert "Redis (embedded): redis://127.0.0.1:" in output
    # initdb's wall of output went to the log file, not the terminal
    assert "initdb" not in output and "Success." not in output
    assert "initdb" in (data_dir / "embedded-postgres.log").read_text()
    assert "Traceback" not in output


def test_the_servers_stop_with_the_second_of_two_processes(start: Start, data_dir: Path) -> None:
    first = start()
    servers = embedded_pids(data_dir)
    second = start()
    assert embedded_pids(data_dir) == servers  # the second process reused them
    assert users(data_dir) == sorted([first.pid, second.pid])

    migrate = subprocess.run(  # another command, on the same servers, exits meanwhile
        [sys.executable, "-m", "service.cli", "migrate"], cwd=data_dir.parent, env=environment_without_servers(), timeout=120,
        capture_output=True, text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert all(pid_alive(pid) for pid in servers)

    first.terminate()
    assert all(pid_alive(pid) for pid in servers)
    second.wait_healthy(within=10)  # still serving on them

    second.terminate()
    assert not any(pid_alive(pid) for pid in servers)


def test_a_killed_process_does_not_keep_the_servers_up(start: Start, data_dir: Path) -> None:
    doomed = start()
    survivor = start()
    servers = embedded_pids(data_dir)

    doomed.kill()  # no clean-up at all: its file stays, its lock goes
    assert (data_dir / "users" / f"{doomed.pid}.pid").exists()
    assert users(data_dir) == [survivor.pid]
    assert all(pid_alive(pid) for pid in servers)

    survivor.terminate()
    assert not any(pid_alive(pid) for pid in servers)
    assert list((data_dir / "users").iterdir()) == []


def test_another_command_alone_stops_the_servers_it_started(data_dir: Path) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"], cwd=data_dir.parent, env=environment_without_servers(), timeout=120,
        capture_output=True, text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (data_dir / "pg" / "PG_VERSION").exists()
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # stopped cleanly on exit


def test_a_process_started_after_the_last_one_left_starts_them_again(start: Start, data_dir: Path) -> None:
    start().terminate()
    again = start()
    postgres, redis = embedded_pids(data_dir)
    assert pid_alive(postgres) and pid_alive(redis)
    again.terminate()
    assert not pid_alive(postgres) and not pid_alive(redis)
