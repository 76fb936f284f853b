"""The certificates a site's QMC export gives, for the QRS client's mutual TLS. (The
broker fixtures are the whole suite's: tests/conftest.py.)"""

from pathlib import Path

import pytest
import trustme


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """The files a site's QMC certificate export gives: root, client cert, client key."""
    client = ca.issue_cert("qlik-client")
    paths = {"ca": tmp_path / "root.pem", "cert": tmp_path / "client.pem",
             "key": tmp_path / "client_key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}
