"""docker-compose.yml, the Dockerfile and Grafana provisioning: parsed and checked
against the repo (no Docker daemon runs here, so the stack itself is not started)."""

import argparse
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from stream_app.commands.main import build_parser
from stream_app.kafka import apache_kafka
from stream_app.settings import env_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services(compose: dict) -> dict:
    return compose["services"]


def test_the_stack_has_every_service(compose):
    assert set(services(compose)) == {
        "kafka", "topics", "worker", "report", "prometheus", "alertmanager", "grafana", "load"
    }


def test_third_party_images_are_pinned(compose):
    for name, svc in services(compose).items():
        image = svc["image"]
        if "build" in svc:
            assert image.startswith("tokenpool:"), name
            continue
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+", image), f"{name}: unpinned {image}"


def test_the_kafka_image_is_the_version_the_test_suite_runs(compose):
    """The Apache Kafka the Kafka tier of the tests starts from Maven Central."""
    assert services(compose)["kafka"]["image"] == f"apache/kafka:{apache_kafka.LATEST}"


def test_kafka_is_a_single_kraft_node(compose):
    env = services(compose)["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1


def test_tokenpool_commands_and_env_are_ones_the_cli_accepts(compose):
    parser = build_parser()
    option_envs = {
        env_name(opt)
        for action in _all_actions(parser)
        for opt in action.option_strings
        if opt.startswith("--")
    }
    for name in ("topics", "worker", "report", "load"):
        svc = services(compose)[name]
        args = svc["command"]
        parsed = parser.parse_args(args)  # exits (fails the test) on an unknown flag
        assert parsed.func, name
        for key in svc["environment"]:
            assert key in option_envs, f"{name}: {key} is no tokenpool option"
        assert svc["environment"]["TOKENPOOL_BROKER"] == "kafka:9092"


def _all_actions(parser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action.choices.values():
                yield from _all_actions(choice)


def test_worker_serves_metrics_on_all_interfaces_and_is_scraped(compose):
    worker = services(compose)["worker"]
    assert worker["environment"]["TOKENPOOL_WEB_HOST"] == "0.0.0.0"
    port = worker["environment"]["TOKENPOOL_WEB_PORT"]
    assert f"{port}:{port}" in worker["ports"]
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] if job["job_name"] == "tokenpool"
               for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"worker:{port}"]
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


def test_order_of_start_health_and_restart(compose):
    svc = services(compose)
    assert svc["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert svc["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully")
    assert svc["report"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully")
    assert svc["topics"]["restart"] == "no"
    for name in ("kafka", "worker", "report", "prometheus", "alertmanager", "grafana"):
        assert "healthcheck" in svc[name], name
        assert svc[name]["restart"] == "unless-stopped", name
    assert svc["load"]["profiles"] == ["load"]


def test_report_service_rewrites_the_plan_on_a_volume_every_day(compose):
    """Point 5: `tokenpool plan --every 24h` from the topics (no history file), the
    report on a volume the image's user may write, and a health check on its age."""
    report = services(compose)["report"]
    args = build_parser().parse_args(report["command"])
    assert args.command == "plan" and args.file is None  # the broker's topics
    assert args.every == timedelta(hours=24)
    folder = args.out.rsplit("/", 1)[0]
    assert f"reports:{folder}" in report["volumes"]
    assert args.out in " ".join(report["healthcheck"]["test"])
    assert report["image"] == services(compose)["worker"]["image"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"mkdir -p [^\n]*{folder}\b[^\n]*&& chown tokenpool [^\n]*{folder}",
                     dockerfile)


def test_every_mounted_file_exists(compose):
    mounts = 0
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
                mounts += 1
            else:
                assert source in compose["volumes"], f"{name}: volume {source} undeclared"
    assert mounts >= 6


def test_dockerfile_installs_the_package_and_runs_the_worker():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    for part in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / part).exists(), part
    assert 'ENTRYPOINT ["tokenpool"]' in text
    assert "TOKENPOOL_WEB_HOST=0.0.0.0" in text
    healthcheck = re.search(r'CMD \["python", "-c", "(.*)"\]', text)
    assert healthcheck and "/health" in healthcheck.group(1)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'tokenpool = "stream_app.commands.main:main"' in pyproject
    assert "pip install --no-cache-dir '.[rocksdb,plan]'" in text
    assert "rocksdb = [" in pyproject and "plan = [" in pyproject


def test_grafana_provisions_the_datasource_and_the_dashboard(compose):
    grafana = services(compose)["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/tokenpool.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[path] / "tokenpool.json").exists()
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    ds = source["datasources"][0]
    assert ds["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/tokenpool.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {ds["uid"]}


def test_the_image_sources_build_a_package_whose_commands_all_load(tmp_path: Path):
    """What the Dockerfile copies is all the package needs: build a wheel from those
    paths alone, unpack it and load every `tokenpool` command from it (no Docker
    daemon here, so the image itself is not built)."""
    import subprocess
    import sys
    import zipfile

    text = (ROOT / "Dockerfile").read_text()
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *parts, _dest = line.split()
        for part in parts:
            source = ROOT / part
            if source.is_dir():
                shutil.copytree(source, src / part,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, src / part)
    # The image compiles the engine; tests/e2e/test_compiled_engine.py builds that
    # wheel from these same paths. This one checks the pure build of them.
    assert "TOKENPOOL_COMPILE=1 pip install" in text
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("tokenpool-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        entry = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        assert "tokenpool = stream_app.commands.main:main" in z.read(entry).decode()
    probe = (
        "import sys, stream_app.commands.main as c\n"
        "assert all(not p.startswith(sys.argv[1]) for p in (c.__file__,)), c.__file__\n"
        "p = c.build_parser()\n"
        "sub = next(a for a in p._actions if a.__class__.__name__ == '_SubParsersAction')\n"
        "for name, parser in sub.choices.items():\n"
        "    parser.format_help()\n"
        "import importlib, pkgutil\n"
        "for pkg in ('rules', 'schemas', 'stream_app', 'adapters'):\n"
        "    m = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(m.__path__, pkg + '.'):\n"
        "        if info.name.split('.')[-1] not in ('__main__',):\n"
        "            importlib.import_module(info.name)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(site)!r}); exec({probe!r})", str(ROOT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
