"""The Vonage SDK clients of `VonageProvider`: one per thread, all built alike.

An SDK client is one `requests` session with one kept-alive connection per host (`pool_maxsize=1`,
see below), and a headers dict that every request rewrites. Threads that shared one would
share that dict, and urllib3 would open a new TLS connection for each send that finds the one
connection busy and throw it away afterwards. The embedded worker sends from a few threads
(`run_outbox --concurrency`): each thread gets a client of its own and keeps its connection.

Options every client gets (VONAGE.md):
- `timeout`: the SDK has none by default.
- `pool_maxsize=1`: `HttpClient.make_request` re-sends a request up to `pool_maxsize` times when
  the connection drops with `RemoteDisconnected`; for `POST /sms/json` that can deliver one SMS
  several times (the drop may come after Vonage accepted it). With 1 that loop runs once: a
  dropped connection surfaces as a transient "connection" error, and the outbox decides whether
  to retry (one possible duplicate, never ten). urllib3's own retries (`max_retries`) only
  repeat failed connects — nothing was sent then — and, for POST, never a read error.
- No `signature_secret` on the `Auth`: with one, `sms.send` signs requests and 4.9.1 signs
  `None` values that requests then drops, so Vonage rejects every send (status 14).
"""

from __future__ import annotations

import threading

from vonage import Auth, HttpClientOptions, Vonage


class VonageClients:
    """Builds a Vonage SDK client for each thread that asks, on first use."""

    def __init__(
        self, *, api_key: str, api_secret: str, rest_host: str, api_host: str, timeout: float
    ) -> None:
        self._auth = (api_key, api_secret)
        # `HttpClientOptions.timeout` is declared `int`, so validating it would reject 2.5 s;
        # `model_construct` keeps the exact value, and `HttpClient` takes an options instance
        # as it is.
        self._options = HttpClientOptions.model_construct(
            rest_host=rest_host,
            api_host=api_host,
            timeout=timeout,
            pool_connections=2,  # rest and api hosts
            pool_maxsize=1,
            max_retries=3,
        )
        self._local = threading.local()

    def get(self) -> Vonage:
        """This thread's client."""
        client: Vonage | None = getattr(self._local, "client", None)
        if client is None:
            api_key, api_secret = self._auth
            client = Vonage(Auth(api_key=api_key, api_secret=api_secret), self._options)
            self._local.client = client
        return client
