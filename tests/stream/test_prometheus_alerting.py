"""A real Prometheus (Debian's package) scrapes a running worker with the shipped alert
rules: a pool driven to exhaustion reads 0 through Prometheus' API and its alert goes
pending; every query of the rules and the dashboard names only exported metrics and
parses in Prometheus (SPEC §5)."""

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kafka_helpers import produce as produce_values
from worker_process import WorkerProcess

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tokenpool.json"
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan",
}
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus makes itself for every target."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names (in `{}` or `by (...)`), durations or template variables."""
    text = re.sub(r'"(\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_metric_names_are_read_out_of_promql():
    expr = ('sum by (group, reason) (rate(tokenpool_x_total{group=~"$group"}[5m])) * 3600'
            ' - on (topic) max by (topic) (faust_y) and up{job="a"} == 0')
    assert metric_names(expr) == {"tokenpool_x_total", "faust_y", "up"}


class Prometheus:
    """A Prometheus server on loopback that scrapes one worker every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not found: `apt-get install prometheus` (.ci/run does)")
        self.port = free_port()
        shutil.copy(ALERTS, workdir / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "tokenpool", "static_configs": [{"targets": [target]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/-/ready", timeout=2
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:  # 400 carries the parse error
            return json.loads(err.read())

    def query(self, expr: str) -> list[dict]:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def stack(stream_config, tmp_path: Path) -> Iterator[tuple[StreamConfig, WorkerProcess,
                                                            Prometheus]]:
    config = stream_config(mode="live")
    asyncio.run(create_topics(config))
    worker = WorkerProcess(config, tmp_path).start(config.partitions)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{worker.port}")
    try:
        yield config, worker, prometheus
    finally:
        prometheus.stop()
        worker.stop()


def exhaust_pool(config: StreamConfig, prometheus: Prometheus) -> None:
    """Group `g` gets 1 token (10 passes); 11 users log in: the last one is denied,
    and a record that is no JSON is dead-lettered. The sessions start once Prometheus
    has scraped the pool, as it would have in any real deployment: `increase()` sees
    no rise in a counter whose first sample is already above 0."""
    ts = stamp()
    asyncio.run(produce_values(config.broker, config.topics.allocations, "", [
        {"kind": "licence", "event_id": "l", "ts": ts, "total_tokens": 1},
        {"kind": "login_group", "event_id": "a", "ts": ts, "group": "g", "tokens": 1},
    ]))
    wait_until(lambda: prometheus.query('tokenpool_pool_capacity_passes{group="g"} == 10'),
               "Prometheus to scrape the new pool")
    ts = stamp()
    starts = [{"event_id": f"s{i}", "ts": ts, "group": "g", "session_id": f"s{i}",
               "user_id": f"u{i}"} for i in range(11)]
    asyncio.run(produce_values(config.broker, config.topics.session_start, "g",
                               [*starts, b"not json"]))


def test_exhausted_pool_reads_zero_in_prometheus_and_its_alert_is_pending(stack):
    config, _worker, prometheus = stack
    exhaust_pool(config, prometheus)
    available = wait_until(
        lambda: [r for r in prometheus.query('tokenpool_pool_available_passes{group="g"}')
                 if r["value"][1] == "0"],
        "available passes of g to read 0 in Prometheus",
    )
    assert available[0]["metric"]["job"] == "tokenpool"
    in_use = prometheus.query('tokenpool_pool_in_use_passes{group="g"}')
    assert in_use[0]["value"][1] == "10"

    def exhausted_alert() -> list[dict]:
        alerts = prometheus.api("alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "TokenpoolPoolExhausted"
                and a["labels"]["group"] == "g" and a["state"] in ("pending", "firing")]

    alert = wait_until(exhausted_alert, "TokenpoolPoolExhausted to be pending or firing")
    assert alert[0]["labels"]["severity"] == "critical"

    def firing(name: str) -> list[dict]:
        alerts = prometheus.api("alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == name
                and a["state"] == "firing"]

    denied = wait_until(lambda: firing("TokenpoolUsersDenied"), "the denial alert")
    assert denied[0]["labels"]["reason"] == "pool_exhausted"
    dead = wait_until(lambda: firing("TokenpoolEventsDeadLettered"), "the dead-letter alert")
    assert dead[0]["labels"]["topic"] == config.topics.session_start


def test_every_rule_and_panel_query_parses_and_names_only_exported_metrics(stack):
    config, worker, prometheus = stack
    exhaust_pool(config, prometheus)
    wait_until(lambda: prometheus.query('tokenpool_pool_available_passes{group="g"} == 0'),
               "the exhausted pool to be scraped")
    wait_until(lambda: prometheus.query("tokenpool_events_rejected_total > 0"),
               "the rejected record to be scraped")
    exported = {name for name, _ in worker.metrics()} | PROMETHEUS_SERIES
    exprs = rule_exprs() + dashboard_exprs()
    assert len(exprs) >= 7 + 14
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {sorted(names - exported)} not exported"
        # Prometheus' own parser and evaluator (dashboard variables set to "all")
        prometheus.query(expr.replace("$group", ".*"))
