"""One delivery worker of the shared-limiter benchmark (started twice by bench/run.py).

Delivers the given queued messages with `message_deliver`, the provider replaced by one that
answers at once and the rate limiter by the product's RedisRateLimiter on a key of its own
(a test or worker using the same Redis database keeps its own bucket). Prints, as its last
line, a JSON object with the wall-clock time of each send.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path[:] = [
    str(REPO),
    *(entry for entry in sys.path[1:] if Path(entry or ".").resolve() != BENCH),
]

BENCH_KEY = "smsproxy:bench:ratelimit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--start-at", type=float, required=True, help="Unix time to begin at.")
    parser.add_argument("--ids", required=True, help="Comma-separated message ids.")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

    import django

    django.setup()

    from bench.fakes import InstantProvider
    from smsproxy.proxy.outbox import deliver as delivery
    from smsproxy.proxy.outbox.ratelimit import RedisRateLimiter

    provider = InstantProvider(prefix=f"BENCH-{os.getpid()}")
    limiter = RedisRateLimiter(args.redis_url, args.rate, key=BENCH_KEY)
    delivery.get_provider = lambda: provider
    delivery.rate_limiter_get = lambda: limiter
    ids = [int(value) for value in args.ids.split(",") if value]
    time.sleep(max(0.0, args.start_at - time.time()))
    for message_id in ids:
        result = delivery.message_deliver(message_id=message_id)
        if result.outcome != delivery.Outcome.SENT:
            print(f"Message {message_id}: {result}", file=sys.stderr)
            return 1
    print(json.dumps({"pid": os.getpid(), "sent_at": provider.sent_at}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
