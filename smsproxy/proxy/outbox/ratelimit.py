"""The outbound rate limit (`SMS_RATE_LIMIT` messages per second, shared by every worker).

Vonage answers status 1 ("throttled") beyond the account's throughput, so delivery takes a token
before each send. The embedded worker is one process: an in-process token bucket is enough.
Celery workers are many processes on many hosts: they share one bucket in Redis (the broker),
updated atomically by a Lua script that reads the clock of the Redis server, so the hosts' own
clocks do not matter.

The bucket holds at most one token: sends are spaced evenly (1/rate apart) rather than burst,
so no one-second window ever sees more than about `rate` sends. A rate of 0 or less disables
the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

REDIS_KEY = "smsproxy:ratelimit:sms"
# Longest single wait before asking the bucket again: keeps a waiting worker responsive when
# the rate is changed, without spinning.
_MAX_SLEEP = 1.0


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Block until a send may go out; return the seconds waited."""
        ...


class UnlimitedRateLimiter:
    def acquire(self) -> float:
        return 0.0


class LocalRateLimiter:
    """A thread-safe token bucket for one process."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._updated = time.monotonic()

    def _take(self) -> float:
        """Take a token if one is there; otherwise return how long until one is."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(1.0, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self) -> float:
        return _wait_for_token(self._take)


# KEYS[1] the bucket; ARGV[1] rate per second. Returns "0" when a token was taken, else the
# seconds to wait, as a string (Redis would truncate a Lua number to an integer).
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = 1
  updated = now
end
tokens = math.min(1, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(1000 / rate) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """A token bucket in Redis, shared by every process that uses the same Redis database."""

    def __init__(self, url: str, rate: float, *, key: str = REDIS_KEY) -> None:
        import redis

        self.rate = rate
        self.key = key
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(_TOKEN_BUCKET_LUA)

    def _take(self) -> float:
        return float(self._script(keys=[self.key], args=[repr(self.rate)]))

    def acquire(self) -> float:
        return _wait_for_token(self._take)


def _wait_for_token(take: Callable[[], float]) -> float:
    waited = 0.0
    while (wait := take()) > 0:
        pause = min(wait, _MAX_SLEEP)
        time.sleep(pause)
        waited += pause
    return waited


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter_get() -> RateLimiter:
    """The limiter for the current settings (one per process and configuration)."""
    rate = float(settings.SMS_RATE_LIMIT)
    broker_url = settings.CELERY_BROKER_URL
    key = (broker_url, rate)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiter_build(broker_url=broker_url, rate=rate)
            _limiters[key] = limiter
        return limiter


def _limiter_build(*, broker_url: str, rate: float) -> RateLimiter:
    if rate <= 0:
        return UnlimitedRateLimiter()
    if not broker_url:
        return LocalRateLimiter(rate)
    if urlsplit(broker_url).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL must be a redis:// or rediss:// URL: the workers share their "
            "SMS rate limit through it."
        )
    return RedisRateLimiter(broker_url, rate)
