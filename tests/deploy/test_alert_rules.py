"""The alert rules and the Prometheus/Alertmanager configs, checked by the real tools
(Debian's `prometheus` and `prometheus-alertmanager`, installed by `.ci/run`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: `apt-get install prometheus prometheus-alertmanager`"
                    " (.ci/run does)")
    return path


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_are_valid():
    out = run(tool("promtool"), "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert "SUCCESS: 7 rules found" in out


def test_every_alert_fires_when_it_should_and_stays_silent_when_it_should_not():
    tests = DEPLOY / "prometheus" / "tests" / "alerts_test.yml"
    out = run(tool("promtool"), "test", "rules", str(tests))
    assert "SUCCESS" in out
    text = tests.read_text()
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for line in rules.splitlines():
        if line.strip().startswith("- alert:"):
            name = line.split(":", 1)[1].strip()
            assert f"alertname: {name}" in text, f"no unit test for {name}"


def test_every_alert_tells_the_on_call_what_to_do():
    import yaml

    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 7
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and len(notes["description"]) > 80, rule["alert"]


def test_prometheus_config_is_valid_and_loads_the_rules():
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "SUCCESS: 7 rules found" in out


def test_alertmanager_config_is_valid():
    run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
