"""Point 1: `GET /qrs/license/accesstypeoverview` is read by the names Qlik's API
reference gives ("License: Get access type overview"): `loginAccess` and
`userAccess`, not `loginAccessType` / `userAccessType` of the deprecated
`accesstypeinfo`. `tokenpool_reconcile_qrs_tokens{kind}` carries each of Qlik's
figures; a payload without a section exports nothing for it and says so."""

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from qlik_helpers import FIXTURES, mapping
from qrs_server import QrsStandIn, shifted_usage

from adapters.qlik.qrs_client import QrsClient
from adapters.qlik.reconcile_service import Reconciler

QRS = FIXTURES / "qrs"
PUBLISHED = QRS / "accesstypeoverview.published.json"
SITE = QRS / "accesstypeoverview.json"
DEPRECATED = QRS / "accesstypeinfo.deprecated.json"
KINDS = {
    "total": ("totalTokens",),
    "available": ("availableTokens",),
    "login_access_allocated": ("loginAccess", "allocatedTokens"),
    "login_access_used": ("loginAccess", "usedTokens"),
    "login_access_unavailable": ("loginAccess", "unavailableTokens"),
    "user_access_allocated": ("userAccess", "allocatedTokens"),
    "user_access_used": ("userAccess", "usedTokens"),
    "user_access_quarantined": ("userAccess", "quarantinedTokens"),
}
"""Each `kind` label and where its figure is in the published AccessTypeOverview."""
METRIC = "tokenpool_reconcile_qrs_tokens"




@contextmanager
def polled(ca: trustme.CA, files: dict[str, str], overview: bytes,
         tmp_path: Path) -> Iterator[Reconciler]:
    state = tmp_path / "state.json"
    state.write_text('{"groups": {}}')
    with QrsStandIn(ca, shifted_usage(timedelta(0)), overview=overview).running() as qrs:
        client = QrsClient(qrs.url, cert=files["cert"], key=files["key"], ca=files["ca"])
        reconciler = Reconciler(client, mapping(), state_file=state)
        asyncio.run(reconciler.poll(now=datetime(2026, 11, 1, 12, tzinfo=UTC)))
        yield reconciler


def figure(payload: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = payload
    for key in path:
        value = value[key]
    return float(value)


def shape(value: object) -> object:
    """The key tree of a JSON value, without its figures."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__ if not isinstance(value, int | float) else "number"


def test_point1_site_fixture_has_exactly_the_published_shape() -> None:
    assert shape(json.loads(SITE.read_text())) == shape(json.loads(PUBLISHED.read_text()))


@pytest.mark.parametrize("payload", [PUBLISHED, SITE], ids=["published-example", "site"])
def test_point1_reconcile_exports_each_qlik_token_figure(
        payload: Path, ca: trustme.CA, certs: dict[str, str], tmp_path: Path) -> None:
    document = json.loads(payload.read_text())
    with polled(ca, certs, payload.read_bytes(), tmp_path) as reconciler:
        registry = reconciler.registry()
        got = {kind: registry.get_sample_value(METRIC, {"kind": kind}) for kind in KINDS}
        assert got == {kind: figure(document, path) for kind, path in KINDS.items()}


def test_point1_site_figures_are_not_zero() -> None:
    """Guards the test above: with all-zero figures it could not tell names apart."""
    document = json.loads(SITE.read_text())
    assert all(figure(document, path) > 0 for path in KINDS.values())


def test_point1_deprecated_accesstypeinfo_names_export_no_figures_and_say_why(
        ca: trustme.CA, certs: dict[str, str], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    with (caplog.at_level(logging.WARNING),
          polled(ca, certs, DEPRECATED.read_bytes(), tmp_path) as reconciler):
        registry = reconciler.registry()
        assert registry.get_sample_value(METRIC, {"kind": "total"}) == 0
        assert registry.get_sample_value(METRIC, {"kind": "login_access_used"}) is None
        assert registry.get_sample_value(METRIC, {"kind": "user_access_used"}) is None
    assert "accesstypeoverview has no loginAccess" in caplog.text
    assert "accesstypeoverview has no userAccess" in caplog.text
