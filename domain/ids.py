"""Identifiers clients may choose (order ids, skus, customer ids): one shape for all."""

from __future__ import annotations

import re

from domain.errors import InvalidInput, quoted

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):  # `$` would let "id\n" through
        raise InvalidInput(
            f"{what} {quoted(value, 80)} is malformed: 1-64 letters, digits, '_', '-', '.' or ':'"
        )
    return value
