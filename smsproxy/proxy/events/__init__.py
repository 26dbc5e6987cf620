"""Marketplace events and the intercept hook (DESIGN.md §11): an outbox of Event rows.

Each change writes its event in its own transaction (`record`); a dispatcher delivers it later
(`deliver`), apart from SMS: the Celery task runs on a queue of its own and the embedded worker
in a thread of its own, so a slow marketplace never delays an SMS.

Modules, lowest first; each imports only modules above it in this list, never one below:
- `webhook`: one signed POST (Standard Webhooks) to a marketplace endpoint;
- `dispatch`: hand due events to the Celery task (by its name) after a commit;
- `payloads`: the `data` of each event type, as the API shows conversations and messages;
- `record`: write an event inside the caller's transaction (nothing when events are off);
- `deliver`: claim, send, back off, give up; staff's resend;
- `intercept`: ask the intercept hook about a forward (uses `webhook`).
The outbox (`smsproxy.proxy.outbox`) and the services sit above the package.
"""
