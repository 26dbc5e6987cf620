"""A marketplace day for bench/pool.py, generated before anything touches the database.

Orders arrive over the opening hours (a base load, a lunch peak and a larger dinner peak). Each
opens a conversation between a courier and a customer; the marketplace dispatches an order to a
courier with fewer than MAX_PER_COURIER live conversations (batching: half the time one who is
already carrying orders), closes the conversation a few minutes after the delivery, and forgets
to close some, which then expire (every conversation has a TTL). Customers are drawn at random,
so a few have two orders at once.

Times are seconds from the opening. A conversation is live on [start, end): `end` is its close
or its expiry, whichever comes first. The lower bound of the pool is the largest number of live
conversations of one real number at any moment: that person needs that many distinct numbers.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass

OPEN_HOURS = 16
MAX_PER_COURIER = 4
TTL_SECONDS = 2 * 3600
# The marketplace closes a conversation this long after the delivery (the rest it forgets).
CLOSE_AFTER_DELIVERY = 5 * 60
CLOSED_SHARE = 0.8
# Delivery time: log-normal, median 30 minutes.
DELIVERY_MEDIAN = 30 * 60
DELIVERY_SIGMA = 0.45


@dataclass(frozen=True)
class Order:
    index: int
    courier: int
    customer: int
    start: float
    # When the marketplace closes the conversation, or None: it expires at start + TTL_SECONDS.
    close_at: float | None

    @property
    def end(self) -> float:
        expiry = self.start + TTL_SECONDS
        return expiry if self.close_at is None else min(self.close_at, expiry)


@dataclass
class Day:
    couriers: int
    customers: int
    orders: list[Order]
    undispatched: int  # orders that found every courier at MAX_PER_COURIER

    def live_peaks(self) -> tuple[int, int, int]:
        """(peak live conversations, the lower bound, peak distinct real numbers in them).

        At equal times a conversation ends before another starts (as the run orders them).
        """
        events = sorted(
            [(order.end, 0, order) for order in self.orders]
            + [(order.start, 1, order) for order in self.orders],
            key=lambda event: (event[0], event[1], event[2].index),
        )
        live: Counter[tuple[str, int]] = Counter()
        conversations = peak_conversations = bound = peak_people = 0
        for _time, starting, order in events:
            people = (("courier", order.courier), ("customer", order.customer))
            step = 1 if starting else -1
            conversations += step
            for person in people:
                live[person] += step
                if live[person] == 0:
                    del live[person]
                else:
                    bound = max(bound, live[person])
            peak_conversations = max(peak_conversations, conversations)
            peak_people = max(peak_people, len(live))
        return peak_conversations, bound, peak_people


def arrival_times(rng: random.Random, count: int) -> list[float]:
    day = OPEN_HOURS * 3600.0
    times = []
    while len(times) < count:
        draw = rng.random()
        if draw < 0.3:
            at = rng.uniform(0, day)
        elif draw < 0.6:
            at = rng.gauss(5.5 * 3600, 3600)  # lunch, 12:30 for a 07:00 opening
        else:
            at = rng.gauss(12.5 * 3600, 1.2 * 3600)  # dinner, 19:30
        if 0 <= at < day:
            times.append(at)
    return sorted(times)


def day_generate(*, seed: int, couriers: int, customers: int, orders: int) -> Day:
    rng = random.Random(seed)
    # Per courier, a heap of the end times of their live conversations.
    carrying: list[list[float]] = [[] for _ in range(couriers)]
    result: list[Order] = []
    undispatched = 0
    for at in arrival_times(rng, orders):
        for ends in carrying:
            while ends and ends[0] <= at:
                heapq.heappop(ends)
        free = [c for c in range(couriers) if len(carrying[c]) < MAX_PER_COURIER]
        if not free:
            undispatched += 1
            continue
        busy = [c for c in free if carrying[c]]
        courier = rng.choice(busy if busy and rng.random() < 0.5 else free)
        delivery = DELIVERY_MEDIAN * math.exp(rng.gauss(0, DELIVERY_SIGMA))
        close_at = at + delivery + CLOSE_AFTER_DELIVERY if rng.random() < CLOSED_SHARE else None
        order = Order(
            index=len(result),
            courier=courier,
            customer=rng.randrange(customers),
            start=at,
            close_at=close_at,
        )
        heapq.heappush(carrying[courier], order.end)
        result.append(order)
    return Day(couriers=couriers, customers=customers, orders=result, undispatched=undispatched)


def day_events(day: Day, *, sweep_every: float) -> list[tuple[float, int, str, Order | None]]:
    """(time, order of kinds at one instant, kind, order) of the run: closes, then the expiry
    sweep, then creations. A close due after the expiry is not sent (the sweep closes it)."""
    events: list[tuple[float, int, str, Order | None]] = []
    for order in day.orders:
        events.append((order.start, 2, "create", order))
        if order.close_at is not None and order.close_at < order.start + TTL_SECONDS:
            events.append((order.close_at, 0, "close", order))
    last = max(order.end for order in day.orders) + sweep_every
    sweeps = int(last // sweep_every) + 1
    events.extend((step * sweep_every, 1, "sweep", None) for step in range(1, sweeps + 1))
    events.sort(key=lambda event: (event[0], event[1], event[3].index if event[3] else -1))
    return events
