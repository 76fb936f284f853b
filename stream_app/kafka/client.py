"""The one place a `StreamConfig` becomes aiokafka connection settings, and what the
broker at the other end is (Tansu or Apache Kafka), where that decides the worker's
workarounds."""

import asyncio
from typing import Any, NamedTuple

from aiokafka.helpers import create_ssl_context

from stream_app.config import StreamConfig


def client_kwargs(config: StreamConfig) -> dict[str, Any]:
    """aiokafka keyword arguments (bootstrap and security) for any client of `config`.

    Usable as `AIOKafkaProducer(**client_kwargs(config))`, likewise for consumers and
    the admin client, so SASL/TLS settings are interpreted in one place.
    """
    sec = config.security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.broker.split(",") if s.strip()],
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(
            cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
        )
    if sec.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        if sec.sasl_username is None or sec.sasl_password is None:
            raise ValueError(
                f"security protocol {sec.protocol} needs --sasl-username and --sasl-password"
            )
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
        kwargs["sasl_plain_username"] = sec.sasl_username
        kwargs["sasl_plain_password"] = sec.sasl_password
    return kwargs


class BrokerTraits(NamedTuple):
    """What the broker is, where its behaviour decides what the worker does."""

    name: str
    """`tansu` or `kafka` (Apache Kafka, or a service built on it)."""

    @classmethod
    def unknown(cls) -> "BrokerTraits":
        """Every workaround on: for a worker built without asking the broker."""
        return cls("tansu")

    @property
    def fence_records(self) -> bool:
        """End every checkpoint with a one-record batch: Tansu answers a partition's end
        offset as the start of its last batch (RELIABILITY.md, "Broker quirks")."""
        return self.name == "tansu"

    @property
    def exact_end_offsets(self) -> bool:
        """ListOffsets answers a partition's true end; Tansu 0.6 answers the start of
        its last batch plus one, and the worker then asks a fetch instead."""
        return self.name != "tansu"

    @property
    def transactions(self) -> bool:
        """Kafka transactions (`--guarantee exactly_once`): Tansu 0.6 refuses a
        transactional producer's InitProducerId."""
        return self.name != "tansu"


OFFSET_FOR_LEADER_EPOCH = 23
"""An API every Apache Kafka broker has had since 0.11, and Tansu 0.6 lacks."""


async def detect_broker(config: StreamConfig, *, timeout: float = 30.0) -> BrokerTraits:
    """Ask the broker for the APIs it offers (ApiVersions) and tell Tansu from Kafka."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import ApiVersionRequest

    client = AIOKafkaClient(**client_kwargs(config), request_timeout_ms=int(timeout * 1000))

    async def run() -> BrokerTraits:
        try:
            await client.bootstrap()
            node = next(iter(client.cluster.brokers())).nodeId
            response = await client.send(node, ApiVersionRequest())
            apis = {api_key for api_key, _, _ in response.api_versions}
            return BrokerTraits("kafka" if OFFSET_FOR_LEADER_EPOCH in apis else "tansu")
        finally:
            await client.close()

    return await asyncio.wait_for(run(), timeout)
