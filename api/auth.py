"""Bearer tokens (CONTRACT 2 and 7.4): JWTs with `sub`, `role` and `exp`, signed HS256 with
the shared secret, or RS256/ES256 with a key of the JSON Web Key Set at
`EVENTGRAPH_JWKS_URL`. PyJWT does the crypto."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections import OrderedDict
from typing import Any

import jwt

from service.context import Principal, Role
from service.settings import Settings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
KEY_SET_ALGORITHMS = frozenset({"RS256", "ES256"})
DEFAULT_TTL = 24 * 3600


class Unauthenticated(Exception):
    pass


class UnstorableClaim(Unauthenticated):
    """A claim that reaches the database holds what it cannot store (NUL, a lone
    surrogate): BAD_USER_INPUT, as for any such input (CONTRACT 7.1)."""


def mint_token(
    secret: str,
    sub: str,
    role: str,
    ttl: int = DEFAULT_TTL,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    Role(role)  # refuse unknown roles early
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, ALGORITHM)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class KeySet:
    """The signing keys of a JSON Web Key Set, by `kid`.

    Fetched when a token names a `kid` it does not hold (or its copy is older than
    `max_age`), at most once per `refetch_interval`, so keys rotate without a restart and
    tokens with made-up `kid`s cannot make it hammer the identity provider. The download
    runs in a thread (urllib) bounded by `timeout`: the event loop never waits on it, and
    concurrent requests that need it share one download.
    """

    def __init__(
        self, url: str, *, refetch_interval: float = 10.0, max_age: float = 300.0, timeout: float = 5.0
    ) -> None:
        self.url = url
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._published: Any = None  # the set as last fetched, to notice changes
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._fetching: asyncio.Future[None] | None = None
        self.generation = 0  # moves when the keys change: tokens verified before are checked again

    async def key(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        known = self._keys.get(kid)
        if known is not None and now - self._fetched_at < self._max_age:
            return known
        if self._fetching is not None or now - self._attempted_at >= self._refetch_interval:
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        if self._fetching is None:
            self._attempted_at = time.monotonic()
            self._fetching = asyncio.ensure_future(self._fetch())
            self._fetching.add_done_callback(lambda _: setattr(self, "_fetching", None))
        await asyncio.shield(self._fetching)  # one waiter giving up cancels no one else's

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                published = await asyncio.to_thread(_download, self.url, self._timeout)
            keys = {
                key.key_id: key
                for key in jwt.PyJWKSet.from_dict(published)
                if key.key_id and key.algorithm_name in KEY_SET_ALGORITHMS and key.public_key_use != "enc"
            }
        except Exception as error:  # unreachable, slow, not a key set: the keys held stay
            log.warning("the JSON Web Key Set at %s could not be read: %r", self.url, error)
            return
        self._fetched_at = time.monotonic()
        if published != self._published:
            self._keys, self._published = keys, published
            self.generation += 1


def _download(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (configured URL)
        return json.loads(response.read(1024 * 1024))


class TokenVerifier:
    """Verifies bearer tokens, remembering the good ones until they expire.

    A client sends the same token with every request; checking its HMAC and decoding
    its JSON again each time was ~10 % of an addItem request's CPU. Only tokens that
    verified are kept (keyed by the whole token string), each with its `exp` (which every
    token has), so a cached token still stops working the second it expires; a change of
    the key set forgets them all.
    """

    def __init__(
        self,
        secret: str | None,
        *,
        max_ttl: int = 604800,
        issuer: str | None = None,
        audience: str | None = None,
        key_set: KeySet | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self._secret = secret or None  # an empty secret would verify anyone's HMAC
        self._max_ttl = max_ttl
        self._issuer = issuer
        self._audience = audience
        self._key_set = key_set
        self._key_generation = 0
        self._max_entries = max_entries
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        return cls(
            settings.jwt_secret,
            max_ttl=settings.jwt_max_ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            key_set=KeySet(
                settings.jwks_url,
                refetch_interval=settings.jwks_refetch_interval,
                timeout=settings.jwks_timeout,
            )
            if settings.jwks_url
            else None,
        )

    async def principal(self, header: str | None) -> Principal | None:
        """None when no credentials were sent; Unauthenticated when they are bad."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        if self._key_set is not None and self._key_set.generation != self._key_generation:
            self._key_generation = self._key_set.generation
            self._verified.clear()
        known = self._verified.get(token)
        if known is None:
            known = self._claims(token, *await self._key_of(token))
            self._verified[token] = known
            if len(self._verified) > self._max_entries:
                self._verified.popitem(last=False)
        principal, expires = known
        if time.time() >= expires:
            self._verified.pop(token, None)
            raise Unauthenticated("the token has expired")
        return principal

    async def _key_of(self, token: str) -> tuple[Any, str]:
        """The key that must have signed the token, and its algorithm."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        algorithm = header.get("alg")
        if algorithm == ALGORITHM and self._secret is not None:
            return self._secret, algorithm
        if algorithm in KEY_SET_ALGORITHMS and self._key_set is not None:
            kid = header.get("kid")
            key = await self._key_set.key(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthenticated(f"the token's signing key (kid {str(kid)[:200]!r}) is unknown")
            if key.algorithm_name != algorithm:
                raise Unauthenticated(f"the key {kid!r} does not sign {algorithm}")
            return key.key, algorithm
        raise Unauthenticated(f"tokens signed with {str(algorithm)[:20]!r} are not accepted")

    def _claims(self, token: str, key: Any, algorithm: str) -> tuple[Principal, float]:
        """The token's principal and its expiry (epoch seconds)."""
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["sub", "role", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        try:
            role = Role(claims["role"])
        except ValueError:
            raise Unauthenticated(f"unknown role {str(claims['role'])[:200]!r}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Unauthenticated("the token has no subject")
        if not _storable(sub):
            raise UnstorableClaim("the token's `sub` holds a character that cannot be stored (NUL)")
        expires = float(claims["exp"])
        lifetime = expires - float(claims.get("iat", time.time()))
        if lifetime > self._max_ttl:
            raise Unauthenticated(f"the token's lifetime exceeds {self._max_ttl} seconds")
        return Principal(sub=sub, role=role), expires
