"""A bare Starlette route on uvicorn: this machine's HTTP floor, measured beside eventgraph.

FIELD-NOTES measured such a route at 11.5k req/s (1 worker, 32 connections) on the
machine the issues' goals were set on; measuring it in the same run says how fast
this machine is today, so a goal can be read as a ratio.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIELD_NOTES_RATE = 11_500  # req/s of this route in FIELD-NOTES


async def graphql(request: Request) -> Response:
    await request.body()
    return Response(b'{"data":{"__typename":"Query"}}', media_type="application/json")


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])
