"""Reference apps measured beside eventgraph, to say how fast this machine is today.

FIELD-NOTES measured both on the machine the issues' goals were set on (1 uvicorn
worker, 32 connections): a raw Starlette route at 11,500 req/s and strawberry's own
stack serving `{ hello }` with its parser and validation caches at 2,900 req/s.
Measuring them in the same run as eventgraph turns a goal into this machine's terms.
"""

from __future__ import annotations

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

# app path -> (what it is, its rate in FIELD-NOTES)
REFERENCES = {
    "benchmarks._references:starlette_route": ("raw Starlette route", 11_500),
    "benchmarks._references:strawberry_hello": ("strawberry { hello }, cached parse+validation", 2_900),
}


async def _graphql(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse({"data": {"hello": "world"}})


starlette_route = Starlette(routes=[Route("/graphql", _graphql, methods=["POST"])])


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


strawberry_hello = GraphQL(
    strawberry.Schema(query=Query, extensions=[ParserCache(), ValidationCache()])
)
