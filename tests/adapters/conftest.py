"""The real broker fixtures of tests/stream, reused here without copying them.

pytest only shares conftest fixtures down a directory tree, so the module is loaded
under its own name and its fixtures re-exported; `kafka_helpers` (beside it) is put on
the import path the same way tests/stream gets it. Also the certificates a site's QMC
export gives, for the QRS client's mutual TLS.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import trustme

_STREAM = Path(__file__).resolve().parents[1] / "stream"
if str(_STREAM) not in sys.path:
    sys.path.insert(0, str(_STREAM))

_spec = importlib.util.spec_from_file_location("tokenpool_stream_fixtures",
                                               _STREAM / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

broker_log = _fixtures.broker_log
broker = _fixtures.broker
stream_config = _fixtures.stream_config
broker_kind = _fixtures.broker_kind


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
