"""Token-bucket rate limits: in this process by default, shared in Redis when one is configured.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; each request takes one. With
`ratelimit_redis_url` set, every API process takes from the same buckets (one atomic Lua script
per request, timed by Redis's own clock); without it each process keeps its own. When Redis
cannot be reached the limiter falls back to its in-process buckets for a while and logs it: a
rate limiter that is down must not take the city's intake down with it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate per second, burst, cost. Returns the seconds to wait ("0":
# taken). Redis's TIME keeps every API process on one clock.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True)
class Limit:
    """A bucket's shape: `per_min` requests a minute on average, `burst` at once."""

    per_min: float
    burst: int

    @property
    def rate_per_s(self) -> float:
        """Refill rate."""
        return self.per_min / 60.0


class Limiter(Protocol):
    """Takes one token from a named bucket."""

    async def take(self, bucket: str, limit: Limit, cost: float = 1.0) -> float:
        """0 when taken; otherwise the seconds until a token is there (nothing was taken)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryLimiter:
    """Buckets in this process (one API process, or per-process limits)."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self.max_buckets = max_buckets

    async def take(self, bucket: str, limit: Limit, cost: float = 1.0) -> float:
        """0 when taken; otherwise the seconds until a token is there."""
        now = time.monotonic()
        tokens, ts = self._buckets.get(bucket, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - ts) * limit.rate_per_s)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / limit.rate_per_s
        if len(self._buckets) >= self.max_buckets and bucket not in self._buckets:
            self._forget_full(now, limit)
        self._buckets[bucket] = (tokens, now)
        return wait

    def _forget_full(self, now: float, limit: Limit) -> None:
        # A bucket that has refilled completely is the same as no bucket at all.
        full_after = limit.burst / limit.rate_per_s
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        while len(self._buckets) >= self.max_buckets:  # all busy: drop the oldest
            self._buckets.pop(next(iter(self._buckets)))

    async def close(self) -> None:
        """Nothing to release."""


class RedisLimiter:
    """Buckets in Redis, shared by every API process; in-process while Redis is unreachable."""

    def __init__(self, url: str, prefix: str = "streetlens:rl:", retry_after_s: float = 10.0):
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
        )
        self._script = self._redis.register_script(_TAKE_LUA)
        self._fallback = MemoryLimiter()
        self._down_until = 0.0

    async def take(self, bucket: str, limit: Limit, cost: float = 1.0) -> float:
        """0 when taken; otherwise the seconds until a token is there."""
        from redis.exceptions import RedisError

        if time.monotonic() >= self._down_until:
            try:
                wait = await self._script(
                    keys=[self.prefix + bucket], args=[limit.rate_per_s, limit.burst, cost]
                )
                return float(wait)
            except (RedisError, OSError) as exc:
                self._down_until = time.monotonic() + self.retry_after_s
                log.warning(
                    "rate limits: Redis at %s unreachable (%s); limiting per process for %.0f s",
                    self.url.split("@")[-1],
                    exc,
                    self.retry_after_s,
                )
        return await self._fallback.take(bucket, limit, cost)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_limiter(redis_url: str) -> Limiter:
    """Redis-backed when a URL is given, in-process otherwise."""
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()


def retry_after(wait_s: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(wait_s))
