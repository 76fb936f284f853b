"""`tokenpool reconcile` against a local HTTPS stand-in for QRS (a Qlik Sense server
cannot run here): drift per group with the users behind it, the drift metric, and
clear messages for certificate problems."""

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from qlik_helpers import FIXTURES, mapping, read_expected
from qrs_server import QrsStandIn, shifted_usage

from adapters.qlik.qrs import decode_usage, passes_in_use
from adapters.qlik.qrs_client import QrsClient, QrsError
from adapters.qlik.reconcile import compute_drift, in_use_from_metrics
from adapters.qlik.reconcile_service import Reconciler
from stream_app.commands.main import main
from stream_app.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, 12, tzinfo=UTC)
"""The QRS fixture's records are of 2026-11-01; this is when they are looked at."""




@pytest.fixture
def qrs(ca: trustme.CA) -> Iterator[QrsStandIn]:
    with QrsStandIn(ca, shifted_usage(timedelta(0))).running() as server:
        yield server


def replay_state(tmp_path: Path) -> Path:
    """tokenpool's own state: the audit log fixture's events replayed (real engine)."""
    allocations = [
        {"kind": "licence", "event_id": "l", "ts": "2026-11-01T00:00:00Z", "total_tokens": 10},
        *({"kind": "login_group", "event_id": f"g-{g}", "ts": "2026-11-01T00:00:00Z",
           "group": g, "tokens": 1} for g in ("finance", "sales", "everyone")),
    ]
    lines = [json.dumps({"topic": "allocations", "value": a}) for a in allocations]
    lines += [json.dumps(r) for r in read_expected("audit/expected.jsonl") if "topic" in r]
    history, state = tmp_path / "history.jsonl", tmp_path / "state.json"
    history.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(history), "--until", AS_OF.isoformat(), "--state", str(state),
                 "--out", str(tmp_path / "out.jsonl")]) == 0
    return state


def test_qrs_usage_counts_passes_per_group_within_28_days() -> None:
    records = decode_usage((FIXTURES / "qrs" / "loginaccessusage.json").read_bytes())
    counted = passes_in_use(records, mapping(), AS_OF)
    groups, unmapped = counted.groups, counted.unmapped
    # The record without loginAccessType is placed by groups.yaml; the September one
    # returned long ago (R7).
    assert {g: (u.in_use, u.users) for g, u in groups.items()} == {
        "finance": (2, {"CORP\\fin_alice": 2}),
        "sales": (1, {"CORP\\bob": 1}),
        "everyone": (1, {"CORP\\carol": 1}),
    }
    assert unmapped == set()
    assert records.skipped == counted.skipped == []


def test_drift_per_group_and_the_users_behind_it(
        qrs: QrsStandIn, certs: dict[str, str], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    client = QrsClient(qrs.url, cert=certs["cert"], key=certs["key"], ca=certs["ca"])
    reconciler = Reconciler(client, mapping(), state_file=replay_state(tmp_path))
    with caplog.at_level(logging.WARNING):
        rows = asyncio.run(reconciler.poll(now=AS_OF))
    # carol's start failed in the proxy's audit log, yet Qlik counts a pass for her.
    assert [(r.group, r.qrs_in_use, r.tokenpool_in_use, r.drift) for r in rows] == [
        ("everyone", 1, 0, 1), ("finance", 2, 2, 0), ("sales", 1, 1, 0)]
    assert "drift group=everyone" in caplog.text and "CORP\\carol (1)" in caplog.text
    assert "group=finance" not in caplog.text
    registry = reconciler.registry()
    drift = "tokenpool_reconcile_drift_passes"
    assert registry.get_sample_value(drift, {"group": "everyone"}) == 1
    assert registry.get_sample_value(drift, {"group": "finance"}) == 0
    assert registry.get_sample_value("tokenpool_reconcile_qrs_tokens",
                                     {"kind": "login_access_allocated"}) == 40
    paths = [path for path, _ in qrs.requests]
    assert paths == ["/qrs/license/loginaccessusage/full", "/qrs/license/accesstypeoverview"]
    assert all(h["X-Qlik-User"] == "UserDirectory=INTERNAL; UserId=sa_api"
               for _, h in qrs.requests)


class _Metrics(BaseHTTPRequestHandler):
    """A worker's /metrics as tokenpool exposes it (two groups on this worker)."""

    text = ("# HELP tokenpool_pool_in_use_passes Passes consumed and not yet returned.\n"
            "# TYPE tokenpool_pool_in_use_passes gauge\n"
            'tokenpool_pool_in_use_passes{group="finance"} 2.0\n'
            'tokenpool_pool_in_use_passes{group="sales"} 1.0\n')

    def do_GET(self) -> None:
        body = self.text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def worker_metrics() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_reconcile_once_prints_the_table_and_fails_on_drift(
        ca: trustme.CA, certs: dict[str, str], worker_metrics: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Move the fixture so its newest pass is an hour old now: the CLI reads the clock.
    newest = datetime(2026, 11, 1, 10, 35, tzinfo=UTC)
    delta = datetime.now(UTC) - timedelta(hours=1) - newest
    with QrsStandIn(ca, shifted_usage(delta)).running() as server:
        code = main(["reconcile", "--once", "--qrs", server.url, "--cert", certs["cert"],
                     "--key", certs["key"], "--ca", certs["ca"], "--metrics", worker_metrics,
                     "--groups", str(FIXTURES / "groups.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    assert rows == {"everyone": ["1", "0", "+1"], "finance": ["2", "2", "+0"],
                    "sales": ["1", "1", "+0"]}


def test_an_untrusted_server_certificate_says_to_pass_the_site_root(
        qrs: QrsStandIn, certs: dict[str, str]) -> None:
    client = QrsClient(qrs.url, cert=certs["cert"], key=certs["key"])  # no --ca
    with pytest.raises(QrsError) as info:
        client.get_sync("/qrs/license/accesstypeoverview")
    message = str(info.value)
    assert "certificate verification failed" in message and "--ca" in message


def test_a_missing_client_certificate_says_to_pass_the_site_client_certificate(
        qrs: QrsStandIn, certs: dict[str, str]) -> None:
    client = QrsClient(qrs.url, cert=None, key=None, ca=certs["ca"])
    with pytest.raises(QrsError) as info:
        client.get_sync("/qrs/license/accesstypeoverview")
    assert "--cert client.pem --key client_key.pem" in str(info.value)


def test_the_cli_reports_a_certificate_error_and_exits_1(
        qrs: QrsStandIn, certs: dict[str, str], worker_metrics: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reconcile", "--once", "--qrs", qrs.url, "--cert", certs["cert"],
                 "--key", certs["key"], "--metrics", worker_metrics])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("tokenpool reconcile: GET /qrs/license/loginaccessusage/full: TLS "
                          "certificate verification failed")


def test_unreadable_client_key_is_explained(certs: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(QrsError, match="cannot load the client certificate"):
        QrsClient("https://127.0.0.1:4242", cert=certs["cert"], key=str(tmp_path / "none"))


def test_metrics_of_several_workers_keep_the_larger_figure_per_group() -> None:
    a = 'tokenpool_pool_in_use_passes{group="finance"} 2.0\n'
    b = ('tokenpool_pool_in_use_passes{group="finance"} 1.0\n'
         'tokenpool_pool_in_use_passes{group="sales"} 4.0\n')
    assert in_use_from_metrics([a, b]) == {"finance": 2, "sales": 4}


def test_groups_only_tokenpool_knows_drift_negative() -> None:
    rows = compute_drift({}, {"finance": 3})
    assert [(r.group, r.drift, r.users) for r in rows] == [("finance", -3, ())]


def test_reconcile_service_serves_the_drift_metric_until_sigterm(
        ca: trustme.CA, certs: dict[str, str], worker_metrics: str, tmp_path: Path) -> None:
    newest = datetime(2026, 11, 1, 10, 35, tzinfo=UTC)
    delta = datetime.now(UTC) - timedelta(hours=1) - newest
    port = free_port()
    log = tmp_path / "reconcile.log"
    with QrsStandIn(ca, shifted_usage(delta)).running() as server, open(log, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "reconcile", "--qrs", server.url,
             "--cert", certs["cert"], "--key", certs["key"], "--ca", certs["ca"],
             "--metrics", worker_metrics, "--groups", str(FIXTURES / "groups.yaml"),
             "--interval", "1s", "--web-port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            text = ""
            for _ in range(300):  # bounded: 30 s for the first poll to be served
                with contextlib.suppress(OSError):
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        text = response.read().decode()
                if 'tokenpool_reconcile_drift_passes{group="everyone"} 1.0' in text:
                    break
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    assert 'tokenpool_reconcile_drift_passes{group="everyone"} 1.0' in text, log.read_text()
    assert 'tokenpool_reconcile_drift_passes{group="finance"} 0.0' in text
    assert code == 0
