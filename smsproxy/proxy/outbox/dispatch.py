"""Hands queued outbound messages to a dispatcher (embedded worker or Celery).

The Celery task is enqueued by its name: `smsproxy.proxy.tasks` (which runs delivery and the
sweep, and so sits above the whole outbox) is never imported from here.
"""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)

# The delivery task's name: deployed workers and queued tasks know it by this name.
DELIVER_TASK = "smsproxy.proxy.deliver_message"

# On Redis a task's priority picks one of the queue's lists, and a worker takes from the first
# list that is not empty: 0 (the queue itself), then 3, 6 and 9.
# A message that was due already and comes back (put back for its number's slot, throttled, a
# transient failure: `tasks.deliver_message` re-enqueues it with an eta) goes ahead of the newly
# queued ones. It is the older, as the embedded worker serves the oldest first; and a worker
# holds an eta task until its time only once it has taken it off the list, so behind a backlog
# the retry "about a second later" came after the whole backlog instead, and a number's reserved
# slot went by unused (bench/throttling.py).
RETRY_PRIORITY = 0
# Forwards and intros, newly queued.
PRIORITY = 3
# Rule 6: replies never delay forwards: an out-of-session reply waits behind every forward and
# intro already enqueued (9 is served only when the other lists are empty).
LOW_PRIORITY = 9

# A broker that does not answer must not hold up the request that queued the message (Vonage
# gives a webhook ~15 s): the row is committed, and the beat sweep enqueues it again later. One
# retry covers a pooled connection that Redis closed meanwhile; the socket timeouts of
# CELERY_BROKER_TRANSPORT_OPTIONS bound each attempt.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


def message_dispatch(*, message_id: int, low_priority: bool = False) -> None:
    """Called after the commit that queued `message_id`.

    With the embedded worker (no `CELERY_BROKER_URL`) there is nothing to do: `run_outbox`
    polls for due rows. With Celery, enqueue the delivery task; if the broker cannot take it,
    log and carry on — the row stays queued and the periodic sweep re-enqueues it.
    `low_priority`: an out-of-session reply, served after the forwards.
    """
    if not settings.CELERY_BROKER_URL:
        return
    # Imported here: a process without a broker never loads Celery (start-up time).
    from smsproxy.celery import app as celery_app

    try:
        celery_app.send_task(
            DELIVER_TASK,
            args=(message_id,),
            retry=True,
            retry_policy=_PUBLISH_RETRY_POLICY,
            priority=LOW_PRIORITY if low_priority else PRIORITY,
        )
    except Exception:
        logger.exception(
            "Could not enqueue message %s; the outbox sweep will enqueue it again.", message_id
        )
