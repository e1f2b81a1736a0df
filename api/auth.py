"""Bearer tokens: HS256 JWTs with `sub` and `role` claims (PyJWT does the crypto)."""

from __future__ import annotations

import time

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
    return Principal(sub=claims["sub"], role=role)


def principal_from_authorization(header: str | None, secret: str) -> Principal | None:
    """None when no credentials were sent; Unauthenticated when they are bad."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    return principal_from_token(token.strip(), secret)
