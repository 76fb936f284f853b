"""QRS license records as the API reference defines them: every field optional.

Point 2: `LicenseUserAccessType` records carry `quarantined`, `quarantineEnd`,
`deletedUserId`, `deletedUserDirectory`; a quarantined or deleted user's pass is not
held (R9: tokenpool then removes it and decides the quarantine itself).
Point 3: a `LicenseLoginAccessUsage` with `"user": null` (or another null or
unreadable field) is skipped, counted and logged with its reason; the rest of the
poll is used. Fixtures use only the field names the reference publishes.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from qlik_helpers import FIXTURES, mapping
from qrs_server import QrsStandIn

from adapters.qlik.ingest import uap_holders_from_qrs
from adapters.qlik.qrs import (
    NO_USER,
    decode_usage,
    decode_user_access,
    holders_from_qrs,
    passes_in_use,
)
from adapters.qlik.qrs_client import QrsClient
from adapters.qlik.reconcile_service import Reconciler

QRS = FIXTURES / "qrs"
AS_OF = datetime(2026, 11, 1, 12, tzinfo=UTC)
NULLS = QRS / "loginaccessusage.nulls.json"
USER_ACCESS = QRS / "useraccesstype_full.json"

# Parameter names of the QRS API reference (sense-developer, RepositoryServiceAPI).
LOGIN_ACCESS_USAGE = {"id", "createdDate", "modifiedDate", "modifiedByUserName", "schemaPath",
                      "privileges", "useStartTime", "latestActivity", "hostName",
                      "serverNodeConfigurationId", "user", "useStopTime", "sessions",
                      "loginAccessType"}
USAGE_SESSION = {"id", "createdDate", "modifiedDate", "modifiedByUserName", "schemaPath",
                 "sessionID", "latestActivity", "serverNodeConfigurationId"}
USER_CONDENSED = {"id", "userId", "userDirectory", "userDirectoryConnectorName", "name",
                  "privileges"}
LOGIN_ACCESS_TYPE_CONDENSED = {"id", "name", "privileges"}
USER_ACCESS_TYPE = {"id", "createdDate", "modifiedDate", "modifiedByUserName", "schemaPath",
                    "privileges", "user", "lastUsed", "quarantined", "quarantineEnd",
                    "deletedUserId", "deletedUserDirectory"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_files(ca: trustme.CA, folder: Path) -> dict[str, str]:
    """A site's QMC certificate export: client cert and key, and the root."""
    client = ca.issue_cert("qlik-client")
    files = {"cert": folder / "client.pem", "key": folder / "client_key.pem",
             "ca": folder / "root.pem"}
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return {k: str(v) for k, v in files.items()}


def unpublished_names(record: dict[str, Any]) -> set[str]:
    names = set(record) - LOGIN_ACCESS_USAGE
    names |= set(record.get("user") or {}) - USER_CONDENSED
    names |= set(record.get("loginAccessType") or {}) - LOGIN_ACCESS_TYPE_CONDENSED
    for session in record.get("sessions") or []:
        names |= set(session) - USAGE_SESSION
    return names


@pytest.mark.parametrize("name", ["loginaccessusage.json", "loginaccessusage.nulls.json"])
def test_usage_fixtures_use_only_published_field_names(name: str) -> None:
    records = json.loads((QRS / name).read_text())
    assert [unpublished_names(r) for r in records] == [set()] * len(records)


def test_user_access_fixture_uses_only_published_field_names() -> None:
    records = json.loads(USER_ACCESS.read_text())
    assert [(set(r) - USER_ACCESS_TYPE) | (set(r.get("user") or {}) - USER_CONDENSED)
            for r in records] == [set()] * len(records)


def test_point2_quarantined_and_deleted_users_hold_no_user_access_pass() -> None:
    uap = holders_from_qrs(decode_user_access(USER_ACCESS.read_bytes()))
    assert uap.holders == {"CORP\\dave", "CORP\\gina"}  # erin's pass is in quarantine
    assert [(s.index, s.reason) for s in uap.not_held] == [
        (1, "quarantined"), (2, "deleted_user"), (3, "no_user"), (5, "invalid")]
    quarantined = uap.not_held[0]
    assert "CORP\\erin" in quarantined.detail and "2026-11-05T10:00:00+00:00" in quarantined.detail


def test_point2_uap_holders_are_read_from_qrs_useraccesstype_full(
        ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = client_files(ca, tmp_path)
    with QrsStandIn(ca, b"[]", user_access=USER_ACCESS.read_bytes()).running() as qrs, \
            caplog.at_level(logging.INFO):
        client = QrsClient(qrs.url, cert=files["cert"], key=files["key"], ca=files["ca"])
        holders = uap_holders_from_qrs(client)
    assert holders == {"CORP\\dave", "CORP\\gina"}
    assert [path for path, _ in qrs.requests] == ["/qrs/license/useraccesstype/full"]
    assert "user access pass not held index=1 reason=quarantined" in caplog.text
    assert "skipped QRS record endpoint=useraccesstype index=3 reason=no_user" in caplog.text


def test_point3_null_user_and_bad_fields_skip_their_record_not_the_poll() -> None:
    decoded = decode_usage(NULLS.read_bytes())
    counted = passes_in_use(decoded, mapping(), AS_OF)
    assert {g: (u.in_use, u.users) for g, u in counted.groups.items()} == {
        "sales": (2, {"CORP\\bob": 1, NO_USER: 1}),  # Qlik counts the pass: so does drift
        "everyone": (1, {NO_USER: 1}),
    }
    skipped = [(s.index, s.reason) for s in decoded.skipped + counted.skipped]
    assert sorted(skipped) == [(2, "no_user_or_group"), (3, "no_use_start_time"),
                               (4, "invalid")]
    invalid = next(s for s in decoded.skipped if s.reason == "invalid")
    assert "useStartTime" in invalid.detail  # the path of the bad field, for the log


def test_point3_reconcile_poll_uses_the_rest_counts_and_logs_each_skip(
        ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = client_files(ca, tmp_path)
    state = tmp_path / "state.json"
    state.write_text('{"groups": {"sales": {"in_use": 2}}}')
    with QrsStandIn(ca, NULLS.read_bytes()).running() as qrs, caplog.at_level(logging.INFO):
        client = QrsClient(qrs.url, cert=files["cert"], key=files["key"], ca=files["ca"])
        reconciler = Reconciler(client, mapping(), state_file=state)
        rows = asyncio.run(reconciler.poll(now=AS_OF))
    assert [(r.group, r.qrs_in_use, r.drift) for r in rows] == [("everyone", 1, 1),
                                                                ("sales", 2, 0)]
    registry = reconciler.registry()
    skipped = "tokenpool_reconcile_skipped_records_total"
    for reason in ("no_user_or_group", "no_use_start_time", "invalid"):
        labels = {"endpoint": "loginaccessusage", "reason": reason}
        assert registry.get_sample_value(skipped, labels) == 1, reason
    assert registry.get_sample_value("tokenpool_reconcile_errors_total", {"source": "qrs"}) == 0
    assert ("skipped QRS record endpoint=loginaccessusage index=2 reason=no_user_or_group"
            in caplog.text)
