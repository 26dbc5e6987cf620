"""Where a local smsproxy serves, so that PUBLIC_BASE_URL follows `make run HOST=... PORT=...`.

Imported by the settings module: plain Python, no Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"

# `make run` writes the origin it serves here, so that a command run from a second terminal
# (simulate_sms, provision_numbers) reaches that server and configures numbers for it.
RUN_ADDRESS_FILE = Path(".run") / "base-url"


def local_base_url(environ: Mapping[str, str], *, recorded: Path | None = None) -> str:
    """The origin used when PUBLIC_BASE_URL is not set.

    `HOST`/`PORT` in the environment (what `make run` exports to the server and the worker)
    win; then the origin `make run` recorded in `recorded`; then 127.0.0.1:8000.
    """
    host = environ.get("HOST", "").strip()
    port = environ.get("PORT", "").strip()
    if host or port:
        # Bound to every interface: the server is reachable on loopback.
        if host in ("0.0.0.0", "::"):  # noqa: S104
            host = DEFAULT_HOST
        return f"http://{host or DEFAULT_HOST}:{port or DEFAULT_PORT}"
    if recorded is not None and recorded.is_file():
        origin = recorded.read_text().strip().rstrip("/")
        if origin.startswith(("http://", "https://")):
            return origin
    return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def unreachable_hint(url: str, error: Exception, *, example: str) -> str:
    """What a simulation command says when nothing answers at `url` (`example`: its --url)."""
    return (
        f"Could not reach {url}: {error}\n"
        "Is smsproxy running (`make run`)? If it serves on another address, point this "
        f"command at it with --url (after `make run PORT=18400`: --url {example}) or set "
        "PUBLIC_BASE_URL, in .env or the environment, to the server's origin."
    )
