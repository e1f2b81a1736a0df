"""asyncpg internals (pinned in pyproject.toml; tests/test_compat.py checks each)."""

import asyncpg


def is_cancelling(conn: asyncpg.Connection) -> bool:
    """A query on the connection is being cancelled: not fit for reuse (asyncpg's own
    pool checks the same before taking a connection back)."""
    return bool(conn._protocol._is_cancelling())  # noqa: SLF001
