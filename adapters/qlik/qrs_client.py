"""HTTPS client for the Qlik Repository Service (QRS), as a site's tools call it.

QRS authenticates a client certificate (the site's `client.pem` / `client_key.pem`
export), wants a cross-site request forgery key both in the query (`xrfkey=`) and
the `X-Qlik-Xrfkey` header, and a `X-Qlik-User` header naming the user the call acts
as (a service account such as INTERNAL\\sa_api).
"""

import asyncio
import secrets
import ssl
import string
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit

_XRF_ALPHABET = string.ascii_letters + string.digits


class QrsError(RuntimeError):
    """A QRS call failed; the message says what to check."""


def xrfkey() -> str:
    """16 letters and digits, as QRS requires."""
    return "".join(secrets.choice(_XRF_ALPHABET) for _ in range(16))


class QrsClient:
    def __init__(self, base_url: str, *, cert: str | None, key: str | None,
                 ca: str | None = None, user: str = "INTERNAL\\sa_api",
                 timeout: float = 30.0, verify: bool = True) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.netloc:
            raise QrsError(f"--qrs {base_url!r}: give the QRS address as https://HOST:4242")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        directory, _, user_id = user.partition("\\")
        self.user_header = f"UserDirectory={directory}; UserId={user_id}"
        self.context = ssl.create_default_context(cafile=ca)
        if not verify:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        if cert is not None:
            try:
                self.context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise QrsError(f"cannot load the client certificate {cert} / key {key}: "
                               f"{exc}") from None

    def get_sync(self, path: str) -> bytes:
        key = xrfkey()
        url = f"{self.base_url}{path}?{urlencode({'xrfkey': key})}"
        request = urllib.request.Request(url, headers={
            "X-Qlik-Xrfkey": key,
            "X-Qlik-User": self.user_header,
            "Accept": "application/json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self.context) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            hint = {401: "the certificate is not trusted by QRS or the X-Qlik-User is "
                         "unknown", 403: "the X-Qlik-User lacks the right to read licences"}
            raise QrsError(f"GET {path}: HTTP {exc.code} {exc.reason}"
                           + (f" ({hint[exc.code]})" if exc.code in hint else "")) from None
        except urllib.error.URLError as exc:
            raise QrsError(self._explain(path, exc.reason)) from None
        except (ssl.SSLError, OSError) as exc:
            raise QrsError(self._explain(path, exc)) from None

    def _explain(self, path: str, reason: object) -> str:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (f"GET {path}: TLS certificate verification failed: "
                    f"{reason.verify_message or reason}. Pass the site's root "
                    "certificate (root.pem from the QMC certificate export) with --ca")
        if isinstance(reason, ssl.SSLError):
            return (f"GET {path}: TLS handshake failed: {reason}. QRS needs the site's "
                    "client certificate: --cert client.pem --key client_key.pem")
        return f"GET {path}: cannot reach {self.base_url}: {reason}"

    async def get(self, path: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, path)
