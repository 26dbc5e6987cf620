"""A local fake of Vonage's SMS endpoint (`POST /sms/json`) that throttles, for bench/throttling.

HTTPS on 127.0.0.1 (the Vonage SDK always speaks https): point VONAGE_REST_HOST at `host` and
REQUESTS_CA_BUNDLE at `ca_file`. Keep-alive (HTTP/1.1), as Vonage's API is.

It answers as Vonage does: status 0 with a message id, or status 1 "Throughput Rate Exceeded"
- above `account_rate` accepted sends in one second (Vonage's "30 API requests per second"),
- above one accepted send per second from each sender in `capped_senders` (US long numbers,
  which the carriers throttle per number).
"In one second" is a fixed one-second window of the wall clock (sends at exactly the allowed
rate fit; two sends of a capped sender a second apart fall in two windows). Every request is
recorded: accepted sends by `client-ref` (the message id: a second acceptance of one id is an
SMS sent twice) with their time, and the throttled answers by cause.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

THROTTLED_TEXT = "Throughput Rate Exceeded - please wait [ 1000 ] and retry"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key; the certificate is its own CA bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=6))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fake-vonage.pem", directory / "fake-vonage.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class FakeSms:
    account_rate: int
    capped_senders: frozenset[str]  # as Vonage's wire has them: digits, no "+"
    host: str = ""
    ca_file: Path = Path()
    accepted: dict[str, list[float]] = field(default_factory=dict)  # client-ref → times
    throttled: Counter[str] = field(default_factory=Counter)  # "account" / "sender" → answers
    requests: int = 0
    _window: int = -1
    _in_window: int = 0
    _sender_window: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.accepted, self.throttled, self.requests = {}, Counter(), 0
            self._window, self._in_window, self._sender_window = -1, 0, {}

    def answer(self, form: dict[str, str]) -> dict[str, Any]:
        sender, ref = form.get("from", ""), form.get("client-ref", "")
        with self._lock:
            self.requests += 1
            now = time.time()
            second = int(now)
            if second != self._window:
                self._window, self._in_window = second, 0
            cause = ""
            if self._in_window >= self.account_rate:
                cause = "account"
            elif sender in self.capped_senders and self._sender_window.get(sender) == second:
                cause = "sender"
            if cause:
                self.throttled[cause] += 1
                return {
                    "message-count": "1",
                    "messages": [{"status": "1", "error-text": THROTTLED_TEXT}],
                }
            self._in_window += 1
            self._sender_window[sender] = second
            self.accepted.setdefault(ref, []).append(now)
            number = sum(len(times) for times in self.accepted.values())
        return {
            "message-count": "1",
            "messages": [
                {
                    "to": form.get("to", ""),
                    "message-id": f"BENCH{number:011d}",
                    "status": "0",
                    "remaining-balance": "1000.00000000",
                    "message-price": "0.03330000",
                    "network": "23410",
                    "client-ref": ref,
                }
            ],
        }

    def accepted_times(self) -> list[float]:
        with self._lock:
            return sorted(at for times in self.accepted.values() for at in times)


@contextmanager
def fake_sms_server(
    directory: Path, *, account_rate: int, capped_senders: frozenset[str]
) -> Iterator[FakeSms]:
    cert_file, key_file = self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    fake = FakeSms(account_rate=account_rate, capped_senders=capped_senders, ca_file=cert_file)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {key: values[0] for key, values in parse_qs(body).items()}
            if self.path.split("?")[0] != "/sms/json":
                self.send_error(404)
                return
            data = json.dumps(fake.answer(form)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
