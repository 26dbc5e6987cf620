"""The outbound rate limit: `SMS_RATE_LIMIT` messages per second shared by every worker, adapted
to Vonage's throttling, and `SMS_RATE_LIMIT_PER_SENDER` per sending number.

Vonage answers status 1 ("throttled", or HTTP 429) beyond the account's throughput, so delivery
takes a token before each send. The embedded worker is one process: an in-process token bucket
is enough. Celery workers are many processes on many hosts: they share one bucket in Redis (the
broker), updated atomically by a Lua script that reads the clock of the Redis server, so the
hosts' own clocks do not matter.

A bucket holds at most one token: sends are spaced evenly (1/rate apart) rather than burst, so
no one-second window ever sees more than about `rate` sends. (The shared Redis bucket spaces
them at SHARED_PACING of the rate and holds up to SHARED_BURST: see there; its script, and how
it keeps Celery's deferred messages in line, are in `ratelimit_lua`.) A rate of 0 or less
disables that limit.

Adapting to throttling (DESIGN.md §6, AIMD): a throttled answer halves the shared rate
(`throttled()`), down to THROTTLE_FLOOR messages per second, once per round: a send that took its
token before the last decrease does not lower it again (the sends in flight when Vonage began to
throttle went out at the old rate, and their answers say nothing more than the first; as TCP
halves once per window). Two throttled answers 50 ms apart halved 30/s twice, to 7.5/s, and two
Celery workers took 22 s to climb back (bench/throttling.py). From a decrease the rate climbs back
by 1/RECOVERY_SECONDS of `SMS_RATE_LIMIT` per second, so about RECOVERY_SECONDS after the last
throttle it is `SMS_RATE_LIMIT` again. Vonage's real throughput is unknown to us and changes
(other senders on the account, carriers), so the limiter probes: it slows down at once when
told to and speeds up steadily when not.

Per sending number: US long numbers are throttled by the carriers per number (about one SMS a
second) whatever the account's throughput. With `SMS_RATE_LIMIT_PER_SENDER` set, a send also
needs a token from its sender's own bucket; both are taken together or not at all. Delivery
asks with `defer_busy_sender`: when the sender's bucket, not the shared one, is what holds the
send back, `acquire` raises SenderBusy instead of sleeping, and the message is put back for
when that token is there. A worker sleeping a second for one number would leave every other
number's messages waiting behind it: measured with a pool of 40 numbers at 30/s, the embedded
worker then sent 6 a second (bench/throttling.py). The embedded worker also asks which numbers
are busy (`sender_waits`) and leaves their messages queued rather than claim them to put back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from smsproxy.proxy.outbox.ratelimit_lua import TOKEN_BUCKET_LUA

REDIS_KEY = "smsproxy:ratelimit:sms"
# Longest single wait before asking the bucket again: keeps a waiting worker responsive when
# the rate is changed, without spinning.
_MAX_SLEEP = 1.0
# The adaptive rate never drops below this (messages per second), nor above SMS_RATE_LIMIT.
THROTTLE_FLOOR = 1.0
# Each throttle multiplies the current rate by this.
THROTTLE_DECREASE = 0.5
# Seconds the rate takes to climb from 0 back to SMS_RATE_LIMIT once throttling stops.
RECOVERY_SECONDS = 30.0
# The Redis limiter spaces its tokens at this share of the rate. Its tokens are spent by many
# processes, whose requests reach Vonage tens of milliseconds apart from when each took its
# token (process scheduling, connection reuse); spaced at exactly 1/rate, that jitter put a
# 31st send into a one-second window now and then, and each throttle halved the rate for
# seconds: two Celery workers reached 86 % of 30/s with 4 throttles (bench/throttling.py). The
# embedded worker sends from one process and keeps the whole rate.
SHARED_PACING = 0.97
# The Redis bucket holds up to this many tokens, though a send takes a whole one: a token taken
# late (a process woken a few ms after it was due, a Redis round trip) leaves its lateness,
# up to half a token, to the next send instead of losing it. Spaced at SHARED_PACING of the
# rate, one second still sees at most rate * SHARED_PACING + SHARED_BURST < rate + 1 sends.
SHARED_BURST = 1.5
# How long Redis keeps the state of a quiet bucket: longer than a full recovery.
_STATE_TTL_MS = 3_600_000
# A bucket this close to a whole token has one: float rounding must not leave a waiter asking
# for a wait too short to move the clock.
_EPSILON = 1e-9
# What the Redis limiter's take says of a ticket: its number's next free slot was reserved for
# it just now (RESERVED), or it holds one already (HELD).
RESERVED = "reserved"
HELD = "held"


class SenderBusy(Exception):
    """The sending number's own bucket holds this send back `wait` seconds, longer than the
    shared bucket would: nothing was taken (the Redis limiter reserved the number's next free
    slot for the ticket, `wait` seconds away)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the sending number's own rate limit: {wait:.2f}s to wait")
        self.wait = wait


class RateLimiter(Protocol):
    def acquire(
        self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
    ) -> float:
        """Block until a send from `sender` may go out; return the seconds waited.

        With `defer_busy_sender`, raise SenderBusy instead of waiting for the sender's own
        bucket longer than for the shared one. With a `ticket` as well (the message's id),
        a limiter shared by many workers reserves the sender's next free slot for it: the
        ticket is next for that number then, and later messages queue behind it.
        """
        ...

    def throttled(self) -> None:
        """Vonage throttled the send this thread last took a token for: slow the shared rate
        down, unless it was lowered since that token was taken."""
        ...

    def current_rate(self) -> float:
        """Messages per second the shared bucket allows now (0 = no limit)."""
        ...

    def sender_waits(self) -> dict[str, float]:
        """Numbers whose own bucket has no token now, as far as this process knows without
        asking anyone (their sends would be deferred), and the seconds until it has one."""
        ...

    def sender_wait(self, sender: str) -> float:
        """Seconds until `sender`'s own bucket has a token, as `sender_waits` tells (0: now)."""
        ...


class UnlimitedRateLimiter:
    def acquire(
        self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
    ) -> float:
        return 0.0

    def throttled(self) -> None:
        return None

    def current_rate(self) -> float:
        return 0.0

    def sender_waits(self) -> dict[str, float]:
        return {}

    def sender_wait(self, sender: str) -> float:
        return 0.0


def _adapted(max_rate: float, rate: float | None, since: float, now: float) -> float:
    """The shared rate at `now`: `rate` set at `since` by a throttle, recovering linearly."""
    if rate is None:
        return max_rate
    return min(max_rate, rate + max(0.0, now - since) * max_rate / RECOVERY_SECONDS)


class LocalRateLimiter:
    """Thread-safe token buckets for one process: one shared, one per sending number.

    `clock` and `sleep` are the monotonic clock and the sleep it waits with (a fake pair in
    tests, so that minutes of throttling run in no time).
    """

    def __init__(
        self,
        rate: float,
        *,
        per_sender: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.per_sender = per_sender
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = 1.0
        self._updated = now
        # Set by a throttle: the rate then, and when; None while not adapted.
        self._throttled_rate: float | None = None
        self._throttled_at = now
        self._decreases = 0  # throttles that lowered the rate so far
        self._seen = threading.local()  # `decreases` when this thread last took a token
        self._senders: dict[str, tuple[float, float]] = {}  # sender → (tokens, updated)

    def _current(self, now: float) -> float:
        return _adapted(self.rate, self._throttled_rate, self._throttled_at, now)

    def current_rate(self) -> float:
        with self._lock:
            return self._current(self._clock()) if self.rate > 0 else 0.0

    # A number has an entry only once it sent under a cap per number: without one, none waits.
    def sender_waits(self) -> dict[str, float]:
        with self._lock:
            now = self._clock()
            waits = {sender: self._sender_wait(sender, now) for sender in self._senders}
        return {sender: wait for sender, wait in waits.items() if wait > 0}

    def sender_wait(self, sender: str) -> float:
        with self._lock:
            return self._sender_wait(sender, self._clock())

    def _sender_wait(self, sender: str, now: float) -> float:
        tokens, updated = self._senders.get(sender, (1.0, now))
        tokens = min(1.0, tokens + (now - updated) * self.per_sender)
        return (1.0 - tokens) / self.per_sender if tokens < 1.0 - _EPSILON else 0.0

    def throttled(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            seen = getattr(self._seen, "decreases", None)
            if seen is not None and seen != self._decreases:
                return  # the send took its token before the last decrease (module docstring)
            now = self._clock()
            floor = min(THROTTLE_FLOOR, self.rate)
            self._throttled_rate = max(floor, self._current(now) * THROTTLE_DECREASE)
            self._throttled_at = now
            self._decreases += 1

    def _take(self, sender: str) -> tuple[float, float, str]:
        """Take the tokens if they are there; otherwise how long until each bucket has one
        (shared, sender's), and no reservation (the third value)."""
        with self._lock:
            now = self._clock()
            shared_wait = sender_wait = 0.0
            if self.rate > 0:
                rate = self._current(now)
                self._tokens = min(1.0, self._tokens + (now - self._updated) * rate)
                self._updated = now
                if self._tokens < 1.0 - _EPSILON:
                    shared_wait = (1.0 - self._tokens) / rate
            sender_tokens = 1.0
            if self.per_sender > 0 and sender:
                tokens, updated = self._senders.get(sender, (1.0, now))
                sender_tokens = min(1.0, tokens + (now - updated) * self.per_sender)
                self._senders[sender] = (sender_tokens, now)
                if sender_tokens < 1.0 - _EPSILON:
                    sender_wait = (1.0 - sender_tokens) / self.per_sender
            if shared_wait > 0 or sender_wait > 0:
                return shared_wait, sender_wait, ""
            if self.rate > 0:
                self._tokens = max(0.0, self._tokens - 1.0)
            if self.per_sender > 0 and sender:
                self._senders[sender] = (max(0.0, sender_tokens - 1.0), now)
                self._forget_idle_senders(now)
            self._seen.decreases = self._decreases
            return 0.0, 0.0, ""

    def _forget_idle_senders(self, now: float) -> None:
        # A sender whose bucket is full again needs no entry: keeps the dict small.
        if len(self._senders) > 1000:
            idle = 1.0 / self.per_sender
            self._senders = {
                sender: state for sender, state in self._senders.items() if now - state[1] < idle
            }

    # The ticket is not used: the embedded worker, one process, does not hand out a busy
    # number's message (`sender_waits`), so it has no queue of deferred messages to order.
    def acquire(
        self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
    ) -> float:
        return _wait_for_token(lambda: self._take(sender), self._sleep, defer_busy_sender)


class RedisRateLimiter:
    """Token buckets in Redis, shared by every process that uses the same Redis database."""

    def __init__(
        self, url: str, rate: float, *, per_sender: float = 0.0, key: str = REDIS_KEY
    ) -> None:
        import redis

        self.rate = rate
        self.per_sender = per_sender
        self.key = key
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(TOKEN_BUCKET_LUA)
        self._seen = threading.local()  # `decreases` when this thread last took a token

    def sender_key(self, sender: str) -> str:
        return f"{self.key}:sender:{sender}" if sender and self.per_sender > 0 else ""

    def _call(self, op: str, sender: str = "", extra: str = "") -> Any:
        args = [
            op,
            repr(max(self.rate, 0.0)),
            repr(max(self.per_sender, 0.0)),
            repr(THROTTLE_FLOOR),
            repr(THROTTLE_DECREASE),
            repr(RECOVERY_SECONDS),
            str(_STATE_TTL_MS),
            extra,
            repr(SHARED_PACING),
            repr(SHARED_BURST),
        ]
        sender_key = self.sender_key(sender)
        reservations = f"{sender_key}:reserved" if sender_key else ""
        return self._script(keys=[self.key, sender_key, reservations], args=args)

    def _take(self, sender: str, ticket: str = "") -> tuple[float, float, str]:
        shared_wait, sender_wait, state, decreases = self._call("take", sender, ticket)
        shared_wait, sender_wait = float(shared_wait), float(sender_wait)
        if shared_wait <= 0 and sender_wait <= 0:
            self._seen.decreases = _text(decreases)
        return shared_wait, sender_wait, _text(state)

    def acquire(
        self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
    ) -> float:
        ticket = ticket if defer_busy_sender else ""
        return _wait_for_token(lambda: self._take(sender, ticket), time.sleep, defer_busy_sender)

    def throttled(self) -> None:
        if self.rate > 0:
            self._call("throttle", extra=getattr(self._seen, "decreases", ""))

    def current_rate(self) -> float:
        return float(self._call("rate")) if self.rate > 0 else 0.0

    # Unknown here (a SCAN per poll, or a round trip per message, would tell): a busy number's
    # message is deferred by `acquire` (SenderBusy) instead.
    def sender_waits(self) -> dict[str, float]:
        return {}

    def sender_wait(self, sender: str) -> float:
        return 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _wait_for_token(
    take: Callable[[], tuple[float, float, str]],
    sleep: Callable[[float], None],
    defer_busy_sender: bool,
) -> float:
    waited = 0.0
    while True:
        shared_wait, sender_wait, state = take()
        if shared_wait <= 0 and sender_wait <= 0:
            return waited
        # A message holding its number's slot is next for that number: it waits out the
        # token's last fraction of a second (a late predecessor) rather than go round again.
        held = state == HELD and sender_wait <= _MAX_SLEEP
        if defer_busy_sender and sender_wait > shared_wait and not held:
            raise SenderBusy(sender_wait)
        pause = min(max(shared_wait, sender_wait), _MAX_SLEEP)
        sleep(pause)
        waited += pause


_limiters: dict[tuple[str, float, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter_get() -> RateLimiter:
    """The limiter for the current settings (one per process and configuration)."""
    rate = float(settings.SMS_RATE_LIMIT)
    per_sender = float(settings.SMS_RATE_LIMIT_PER_SENDER)
    broker_url = settings.CELERY_BROKER_URL
    key = (broker_url, rate, per_sender)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiter_build(broker_url=broker_url, rate=rate, per_sender=per_sender)
            _limiters[key] = limiter
        return limiter


def _limiter_build(*, broker_url: str, rate: float, per_sender: float) -> RateLimiter:
    if not math.isfinite(rate) or not math.isfinite(per_sender):
        raise ImproperlyConfigured("SMS_RATE_LIMIT and SMS_RATE_LIMIT_PER_SENDER must be finite.")
    if rate <= 0 and per_sender <= 0:
        return UnlimitedRateLimiter()
    if not broker_url:
        return LocalRateLimiter(rate, per_sender=per_sender)
    if urlsplit(broker_url).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL must be a redis:// or rediss:// URL: the workers share their "
            "SMS rate limit through it."
        )
    return RedisRateLimiter(broker_url, rate, per_sender=per_sender)
