"""The outbox (DESIGN.md §6): every outbound SMS is a queued Message row, sent by a dispatcher.

Modules, lowest first: `ratelimit` (the shared send rate), `receipts` (parts and delivery
receipts), `deliver` (claim, send, record the outcome), `dispatch` (hand a committed row to the
embedded worker or Celery), `queue` (write rows and hand them off after commit).
"""
