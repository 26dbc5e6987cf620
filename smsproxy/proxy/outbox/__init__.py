"""The outbox (DESIGN.md §6): every outbound SMS is a queued Message row, sent by a dispatcher.

Modules, lowest first; each imports only modules above it in this list, never one below:
- `ratelimit`: the shared send rate;
- `parts`: the parts of a sent message and the message status they make up;
- `receipts`: delivery receipts (uses `parts`);
- `claim`: the one atomic claim of a queued row;
- `record`: write the outcome of a send, retried over a database blip (uses `parts`);
- `stale`: settle rows a dead worker left in `sending` (uses `parts`, `record`);
- `intercept`: the intercept hook's verdict on a claimed forward (uses `record`);
- `deliver`: claim, ask the intercept hook, send, record the outcome (uses `claim`,
  `intercept`, `ratelimit`, `record`);
- `dispatch`: hand a committed row to the embedded worker or Celery (the task by its name);
- `queue`: write rows and hand them off after commit, staff's retry, re-dispatch (uses `dispatch`).
The Celery tasks (`smsproxy.proxy.tasks`) and the periodic sweep (`smsproxy.proxy.services.sweep`)
sit above the package: nothing in it imports them. Below it, `smsproxy.proxy.events` writes the
`message.status` events of the outcomes and asks the intercept hook.
"""
