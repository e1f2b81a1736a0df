"""graphql-core internals (pinned in pyproject.toml; tests/test_compat.py checks each)."""

from graphql.execution.executor import CollectedErrors

__all__ = ["CollectedErrors"]  # the executor's error list, deduplicated by path
