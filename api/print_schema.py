"""Print the schema's SDL: `python -m api.print_schema > schema.graphql` refreshes the snapshot."""

from __future__ import annotations

from api.schema import build_schema
from service.settings import Settings


def schema_sdl() -> str:
    return build_schema(Settings()).strawberry.as_str() + "\n"


if __name__ == "__main__":
    print(schema_sdl(), end="")
