"""A local HTTPS server that answers like QRS, for the reconcile tests.

A Qlik Sense server cannot run here, so this stands in for it: stdlib `http.server`
over TLS with a certificate from a test CA (trustme), requiring a client certificate
from that CA, checking the Xrfkey query against the X-Qlik-Xrfkey header, and serving
the documented JSON shapes from tests/adapters/fixtures/qrs (see its README.md).
"""

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

FIXTURES = Path(__file__).parent / "fixtures" / "qrs"
DATE_FIELDS = ("useStartTime", "latestActivity", "useStopTime")


def shifted_usage(delta: timedelta) -> bytes:
    """The usage fixture with every instant moved by `delta`."""
    records: list[dict[str, Any]] = json.loads((FIXTURES / "loginaccessusage.json").read_text())

    def move(obj: dict[str, Any]) -> None:
        for name in DATE_FIELDS:
            if obj.get(name):
                obj[name] = (datetime.fromisoformat(obj[name]) + delta).isoformat()

    for record in records:
        move(record)
        for session in record.get("sessions") or []:
            move(session)
    return json.dumps(records).encode()


class QrsStandIn:
    def __init__(self, ca: trustme.CA, usage: bytes, *, overview: bytes | None = None,
                 user_access: bytes | None = None) -> None:
        self.ca = ca
        self.usage = usage
        self.overview = overview
        self.user_access = user_access
        self.requests: list[tuple[str, dict[str, str]]] = []
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                key = parse_qs(parts.query).get("xrfkey", [""])[0]
                stand_in.requests.append((parts.path, dict(self.headers)))
                if not key or key != self.headers.get("X-Qlik-Xrfkey"):
                    return self._send(403, b'"Xrfkey missing or not matching"')
                if not self.headers.get("X-Qlik-User"):
                    return self._send(401, b'"no X-Qlik-User"')
                body = {
                    "/qrs/license/loginaccessusage/full": stand_in.usage,
                    "/qrs/license/accesstypeoverview": stand_in.overview
                    or (FIXTURES / "accesstypeoverview.json").read_bytes(),
                    "/qrs/license/useraccesstype/full": stand_in.user_access,
                }.get(parts.path)
                if body is None:
                    return self._send(404, b'"not found"')
                return self._send(200, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator["QrsStandIn"]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
