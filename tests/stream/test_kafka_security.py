"""Secure connections on the broker users run: Apache Kafka serving SASL_SSL with
SCRAM-SHA-512 logins and client certificates required (mutual TLS), its users written
when the node is formatted. `topics create` and the worker log in with the
`--security-protocol`, `--sasl-*` and `--ssl-*` settings (the password from
`TOKENPOOL_SASL_PASSWORD`) and run the seed scenario; a wrong password, or no client
certificate, is refused with a message that says so. Apache Kafka only: Tansu can
neither serve TLS nor hold a SCRAM user (tests/stream/test_secure_connection.py).
"""

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest
import trustme
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives import serialization
from stream_harness import feed_and_check, replay_reference
from worker_process import ROOT, WorkerProcess

from stream_app.config import Secret, Security, StreamConfig
from stream_app.kafka.apache_kafka import KafkaCluster
from stream_app.kafka.client import client_kwargs
from stream_app.kafka.topics import create_topics

pytestmark = pytest.mark.kafka_only

SEED = ROOT / "examples" / "seed-scenario.jsonl"
PASSWORD = "pw-5d0b7e91-never-logged"
BROKER_PASSWORD = "broker-3e8a"


class SecureKafka(NamedTuple):
    bootstrap: str
    security: Security


def _pem_files(d: Path) -> tuple[Path, Path, Path, Path]:
    """CA, the broker's PEM keystore (PKCS#8 key + chain: Kafka's PEM format), and the
    client's certificate and key (trustme)."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("tokenpool-worker")
    ca.cert_pem.write_to_path(d / "ca.pem")
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    keystore = d / "broker-keystore.pem"
    keystore.write_bytes(pkcs8 + b"".join(c.bytes() for c in server.cert_chain_pems))
    client.private_key_pem.write_to_path(d / "client.key")
    client.cert_chain_pems[0].write_to_path(d / "client.pem")
    return d / "ca.pem", keystore, d / "client.pem", d / "client.key"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, broker_kind) -> Iterator[SecureKafka]:
    d = tmp_path_factory.mktemp("secure-kafka")
    ca, keystore, cert, key = _pem_files(d)
    security = Security(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                        sasl_username="tokenpool", sasl_password=Secret(PASSWORD),
                        ssl_cafile=str(ca), ssl_certfile=str(cert), ssl_keyfile=str(key))
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{BROKER_PASSWORD}";')
    overrides = {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca),
        # Kafka ignores the plain ssl.client.auth on a SASL_SSL listener.
        "listener.name.sasl_ssl.ssl.client.auth": "required",
    }
    probe = StreamConfig(broker="127.0.0.1:1", security=security)
    client = {k: v for k, v in client_kwargs(probe).items() if k != "bootstrap_servers"}
    with KafkaCluster(1, broker_kind.version, home=d / "kafka", overrides=overrides,
                      protocol="SASL_SSL", client=client,
                      scram_users={"broker": BROKER_PASSWORD, "tokenpool": PASSWORD}) as cluster:
        yield SecureKafka(cluster.bootstrap, security)


def _flags(security: Security) -> list[str]:
    """Every security flag but the password, which goes by TOKENPOOL_SASL_PASSWORD."""
    return ["--security-protocol", security.protocol, "--sasl-mechanism",
            security.sasl_mechanism, "--sasl-username", str(security.sasl_username),
            "--ssl-cafile", str(security.ssl_cafile), "--ssl-certfile",
            str(security.ssl_certfile), "--ssl-keyfile", str(security.ssl_keyfile)]


def test_topics_and_worker_log_in_with_scram_over_mutual_tls_and_run_the_seed(
    secure: SecureKafka, stream_config, tmp_path: Path
) -> None:
    config: StreamConfig = stream_config(broker=secure.bootstrap, security=secure.security,
                                         mode="replay")
    names = [arg for field in config.topics.__struct_fields__
             for arg in ("--topic-" + field.replace("_", "-"), getattr(config.topics, field))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    created = subprocess.run(
        [sys.executable, "-m", "stream_app", "topics", "create", "--broker", config.broker,
         "--app-id", config.app_id, *names, *_flags(secure.security)],
        env={**env, "TOKENPOOL_SASL_PASSWORD": PASSWORD}, cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert created.returncode == 0, created.stderr
    records = [json.loads(line) for line in SEED.read_text().splitlines()]
    expected, state = replay_reference(records, tmp_path)
    worker = WorkerProcess(config, tmp_path, extra=_flags(secure.security),
                           env={"TOKENPOOL_SASL_PASSWORD": PASSWORD})
    worker.start(wait_partitions=config.partitions)
    try:
        feed_and_check(config, worker, records, expected, state)
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_text()


@pytest.mark.parametrize("case", ["wrong password", "no client certificate"])
def test_a_wrong_password_or_a_missing_certificate_is_refused(
    secure: SecureKafka, stream_config, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client cannot bootstrap, and its log says why (aiokafka's error record)."""
    if case == "wrong password":
        security = msgspec.structs.replace(secure.security, sasl_password=Secret("nope"))
        reason = "SaslAuthenticationFailed"
    else:
        security = msgspec.structs.replace(secure.security, ssl_certfile=None,
                                           ssl_keyfile=None)
        reason = "Unable connect"
    config: StreamConfig = stream_config(broker=secure.bootstrap, security=security)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), \
            pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(create_topics(config, timeout=15))
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text
    assert "nope" not in caplog.text and PASSWORD not in caplog.text
