"""The API throttle, failing open when its counter store (Redis) is down.

DRF's throttle keeps its counters in the default cache, which production shares in Redis. A
Redis outage must not turn every API call into a 500: the marketplace could no longer open or
close conversations although the database works. While the cache cannot be reached, requests
are let through unthrottled (the token still authenticates each one) and the outage is logged
once when it starts and once when it ends, not on every request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redis.exceptions import RedisError
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)

# What a cache backend raises when its server is away: redis-py's errors, and socket errors
# from other backends (memcached).
CACHE_DOWN_ERRORS = (RedisError, OSError)


class _CacheHealth:
    """Whether the last throttle check reached the cache; logs only the changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down = False

    def mark(self, *, down: bool, error: BaseException | None = None) -> None:
        with self._lock:
            if down == self._down:
                return
            self._down = down
        if down:
            logger.error(
                "The API throttle's cache is unreachable (%s): requests are not throttled "
                "until it is back.",
                error,
            )
        else:
            logger.warning("The API throttle's cache is reachable again: throttling resumed.")


cache_health = _CacheHealth()


class FailOpenUserRateThrottle(UserRateThrottle):
    """`UserRateThrottle` that lets requests through while the cache is down."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            allowed = super().allow_request(request, view)
        except CACHE_DOWN_ERRORS as error:
            cache_health.mark(down=True, error=error)
            return True
        cache_health.mark(down=False)
        return allowed
