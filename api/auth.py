"""Bearer tokens: HS256 JWTs with `sub` and `role` claims (PyJWT does the crypto)."""

from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from service.context import Principal, Role

ALGORITHM = "HS256"
DEFAULT_TTL = 24 * 3600


class Unauthenticated(Exception):
    pass


def mint_token(secret: str, sub: str, role: str, ttl: int = DEFAULT_TTL) -> str:
    Role(role)  # refuse unknown roles early
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + ttl}, secret, ALGORITHM)


def principal_from_token(token: str, secret: str) -> Principal:
    return _verify(token, secret)[0]


def _verify(token: str, secret: str) -> tuple[Principal, float]:
    """The token's principal and its expiry (epoch seconds; inf when it has none)."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthenticated(f"invalid token: {error}") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthenticated(f"unknown role {claims['role']!r}") from None
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise Unauthenticated("the token has no subject")
    expires = claims.get("exp")
    return Principal(sub=claims["sub"], role=role), float(expires) if expires is not None else float("inf")


def principal_from_authorization(header: str | None, secret: str) -> Principal | None:
    """None when no credentials were sent; Unauthenticated when they are bad."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    return principal_from_token(token.strip(), secret)


class TokenVerifier:
    """Verifies bearer tokens, remembering the good ones until they expire.

    A client sends the same token with every request; checking its HMAC and decoding
    its JSON again each time was ~10 % of an addItem request's CPU. Only tokens that
    verified are kept (keyed by the whole token string), each with its `exp`, so a
    cached token still stops working the second it expires.
    """

    def __init__(self, secret: str, max_entries: int = 10_000) -> None:
        self._secret = secret
        self._max_entries = max_entries
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def principal(self, header: str | None) -> Principal | None:
        """None when no credentials were sent; Unauthenticated when they are bad."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        known = self._verified.get(token)
        if known is None:
            known = _verify(token, self._secret)
            self._verified[token] = known
            if len(self._verified) > self._max_entries:
                self._verified.popitem(last=False)
        principal, expires = known
        if time.time() >= expires:
            self._verified.pop(token, None)
            raise Unauthenticated("the token has expired")
        return principal
