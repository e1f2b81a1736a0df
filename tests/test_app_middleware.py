"""GraphQL over HTTP passes through the middleware the app declares, as every other route."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from service.container import Services
from service.settings import Settings
from tests.conftest import serving


class Recorder:
    seen: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Recorder.seen.append(f'{scope["method"]} {scope["path"]}')
        await self.app(scope, receive, send)


async def test_graphql_requests_pass_through_added_middleware(services: Services, settings: Settings) -> None:
    app = create_app(settings, services)
    app.add_middleware(Recorder)
    Recorder.seen = []
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        answer = await http.post("/graphql", json={"query": "{ __typename }"})
        assert answer.json() == {"data": {"__typename": "Query"}}
        await http.get("/graphql", params={"query": "{ __typename }"})
        await http.get("/healthz")
    assert Recorder.seen == ["POST /graphql", "GET /graphql", "GET /healthz"]
