"""Requests per second per caller (CONTRACT 7.3), one budget for all processes.

Each caller (`role:sub`, or `address:<ip>` without a valid token) has a GCRA bucket: its
"theoretical arrival time" advances by 1/rate per request and may run at most `burst`
requests ahead of the clock. The buckets live in Redis, read and advanced by one Lua
script per check (on Redis' own clock, so processes on several hosts agree), each key
expiring once its bucket is full again.

A Redis round trip costs this process ~95 µs of CPU (redis-py asyncio, measured here),
about half of an addItem request, so:
- a process reserves up to 1/20 s of a caller's rate at once (a lease) and spends it
  locally for at most a second: callers limited to 20 requests/s or less go to Redis on
  every request; a busier caller may get up to a lease's worth per process above its
  burst, and is charged for a lease it left unspent. One check per caller and process
  asks for a lease at a time; the caller's other checks wait for its answer;
- checks made while others are under way go out together in the next script call
  (16 keys cost ~130 µs).

Without Redis, or while it does not answer, each process keeps the buckets itself (the
limit then holds per process): a request never fails because Redis is down. The outage
is logged once, and Redis is tried again every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.auth import Unauthenticated
from readmodels.coalesce import CoalescedLookup
from service.context import Principal
from service.settings import Settings

log = logging.getLogger(__name__)

LEASE_OF_RATE = 0.05  # a lease holds this many seconds of the caller's rate
LEASE_LIFETIME = 1.0  # seconds a process may spend a lease
RETRY_REDIS_AFTER = 5.0  # seconds of per-process buckets after Redis failed to answer
REDIS_TIMEOUT = 0.5  # seconds: a Redis that does not answer by then is treated as down
MAX_CALLERS = 100_000  # per-process buckets and leases kept (least recently used go)

# KEYS: one bucket per check (a caller may come twice); ARGV[1]: µs between requests,
# ARGV[2]: the burst, ARGV[2 + i]: requests KEYS[i] wants. Reply per key: the requests
# granted (at least 1), or minus the µs until one would be.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local replies = {}
for i, key in ipairs(KEYS) do
  local due = math.max(tonumber(redis.call('GET', key)) or now, now)
  local granted = math.min(tonumber(ARGV[2 + i]), math.floor((now + window - due) / interval))
  if granted < 1 then
    replies[i] = -math.max(1, math.ceil(due + interval - window - now))
  else
    due = due + granted * interval
    redis.call('SET', key, string.format('%.3f', due), 'PX', math.ceil((due - now) / 1000) + 1)
    replies[i] = granted
  end
end
return replies
"""


class RateLimited(Exception):
    code = "RATE_LIMITED"

    def __init__(self, wait: float) -> None:
        self.retry_after = max(1, math.ceil(wait))  # whole seconds, as Retry-After has them
        super().__init__(f"Too many requests: retry in {self.retry_after} s.")


def caller_of(authenticated: Principal | Unauthenticated | None, client: Sequence[object] | None) -> str:
    """Whose budget a request spends: the token's role and subject, else the client address."""
    if isinstance(authenticated, Principal):
        return f"{authenticated.role.value}:{authenticated.sub}"
    return f"address:{client[0] if client else '-'}"


class Buckets:
    """GCRA buckets in this process (seconds, monotonic clock)."""

    def __init__(self, rate: float, burst: float) -> None:
        self._interval = 1.0 / rate
        self._window = burst / rate
        self._due: OrderedDict[str, float] = OrderedDict()

    def take(self, caller: str, now: float) -> float:
        """0 when the request may go, else the seconds until it could."""
        due = max(self._due.get(caller, now), now) + self._interval
        wait = due - self._window - now
        if wait > 0:
            return wait
        self._due[caller] = due
        self._due.move_to_end(caller)
        if len(self._due) > MAX_CALLERS:
            self._due.popitem(last=False)
        return 0.0


class _Ask:
    """One check's request to Redis (hashed by identity: a caller may ask twice at once)."""

    __slots__ = ("caller", "want")

    def __init__(self, caller: str, want: int) -> None:
        self.caller = caller
        self.want = want


class RateLimiter:
    """The caller budgets of one process: in Redis when there is one, else its own."""

    def __init__(self, rate: float, burst: float, client: redis.Redis | None, prefix: str) -> None:
        self._local = Buckets(rate, burst)
        self._client = client
        self._prefix = prefix
        self._interval_us = repr(1e6 / rate)
        self._burst = repr(burst)
        self._lease_size = max(1, min(int(rate * LEASE_OF_RATE), int(burst // 2)))
        self._leases: OrderedDict[str, tuple[int, float]] = OrderedDict()  # caller: (left, until)
        self._asking: dict[str, asyncio.Future[float | None]] = {}  # callers waiting for a lease
        self._local_until = float("-inf")  # Redis is skipped until then
        self._redis_down = False
        self._take = client.register_script(_TAKE) if client is not None else None
        self._asks: CoalescedLookup[_Ask, int] = CoalescedLookup(self._ask_redis)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """None when no limit is configured (a request then pays nothing for it)."""
        rate = settings.rate_limit_rps
        if rate <= 0:
            return None
        client = None
        if settings.redis_url:
            client = redis.from_url(
                settings.redis_url,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # a failed check falls back at once, never waits
            )
        else:
            log.info("rate limits are kept per process (no Redis)")
        burst = max(1.0, settings.rate_limit_burst or 2 * rate)  # below 1, nothing would ever pass
        return cls(rate, burst, client, settings.rate_limit_prefix)

    async def check(self, caller: str) -> None:
        """Spends one request of the caller's budget, or raises RateLimited."""
        while True:
            now = time.monotonic()
            if self._take is None or now < self._local_until:
                return self._check_here(caller, now)
            if self._spend_lease(caller, now):
                return None
            asking = self._asking.get(caller)
            if asking is None:
                break
            # Another check of this caller is asking Redis for a lease: share its answer
            # (asking too would reserve a lease per concurrent request).
            refusal = await asyncio.shield(asking)
            if refusal is not None:
                raise RateLimited(refusal)
        asking = asyncio.get_running_loop().create_future()
        if self._lease_size > 1:
            self._asking[caller] = asking
        refusal = None
        try:
            refusal = await self._ask_for_lease(caller, now)
        finally:
            if self._asking.get(caller) is asking:
                del self._asking[caller]
            asking.set_result(refusal)
        if refusal is not None:
            raise RateLimited(refusal)
        return None

    def _spend_lease(self, caller: str, now: float) -> bool:
        lease = self._leases.get(caller)
        if lease is None or lease[0] <= 0 or now >= lease[1]:
            return False
        self._leases[caller] = (lease[0] - 1, lease[1])
        return True

    async def _ask_for_lease(self, caller: str, now: float) -> float | None:
        """Takes a lease from Redis and spends one request of it; else the seconds to wait."""
        ask = _Ask(caller, self._lease_size)
        try:
            granted = (await self._asks.get((ask,)))[ask]
        except (RedisError, OSError) as error:
            self._on_redis_down(error)
            wait = self._local.take(caller, time.monotonic())
            return wait if wait > 0 else None
        if self._redis_down:
            self._redis_down = False
            log.warning("rate limits are shared through Redis again")
        if granted < 0:
            return -granted / 1e6
        if granted > 1:
            self._leases[caller] = (granted - 1, now + LEASE_LIFETIME)
            self._leases.move_to_end(caller)
            if len(self._leases) > MAX_CALLERS:
                self._leases.popitem(last=False)
        return None

    def _check_here(self, caller: str, now: float) -> None:
        wait = self._local.take(caller, now)
        if wait > 0:
            raise RateLimited(wait)

    def _on_redis_down(self, error: BaseException) -> None:
        self._local_until = time.monotonic() + RETRY_REDIS_AFTER
        if not self._redis_down:
            self._redis_down = True
            log.warning("Redis does not answer (%r): rate limits are kept per process until it does", error)

    async def _ask_redis(self, asks: list[_Ask]) -> dict[_Ask, int]:
        assert self._take is not None
        replies = await self._take(
            keys=[self._prefix + ask.caller for ask in asks],
            args=[self._interval_us, self._burst, *(ask.want for ask in asks)],
        )
        return dict(zip(asks, replies, strict=True))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
