"""A fake Vonage SMS API on 127.0.0.1 over HTTPS (the SDK always speaks https), for child
processes: point VONAGE_REST_HOST at `host` and REQUESTS_CA_BUNDLE at `ca_file`.

It records every `POST /sms/json` and either holds the connection open without answering (a
send in flight when the worker dies) or answers as Vonage does when it accepts a message.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.proxy.fixtures import vonage_answer


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key; the certificate is its own CA bundle."""
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
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "fake-vonage.pem"
    key_file = directory / "fake-vonage.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class FakeVonage:
    def __init__(self, host: str, ca_file: Path) -> None:
        self.host = host
        self.ca_file = ca_file
        self.sends: list[dict[str, str]] = []
        self.answering = False  # False: hold every send open, unanswered
        self.send_arrived = threading.Event()
        self.release = threading.Event()  # ends the held connections (when the test ends)
        self._lock = threading.Lock()

    def record(self, form: dict[str, str]) -> int:
        with self._lock:
            self.sends.append(form)
            self.send_arrived.set()
            return len(self.sends)


@contextmanager
def fake_vonage(directory: Path) -> Iterator[FakeVonage]:
    cert_file, key_file = self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {key: values[0] for key, values in parse_qs(body).items()}
            count = fake.record(form)
            if not fake.answering:
                fake.release.wait(120)
                self.close_connection = True
                return
            answer = vonage_answer("sms_send_ok", CLIENT_REF=form.get("client-ref", ""))
            answer["messages"][0]["to"] = form.get("to", "")
            answer["messages"][0]["message-id"] = f"0C00000000FAKE{count:03d}"
            data = json.dumps(answer).encode()
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
    fake = FakeVonage(f"127.0.0.1:{server.server_address[1]}", cert_file)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
