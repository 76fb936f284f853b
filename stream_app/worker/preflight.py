"""What a worker checks before it joins its group, so that a wrong setup stops it at
once with one message that says what to do, not later in a rebalance."""

import asyncio

from aiokafka.errors import KafkaError

from stream_app.config import StreamConfig
from stream_app.kafka.client import BrokerTraits, detect_broker
from stream_app.kafka.topics import missing_topics
from stream_app.worker.faust_app import FaustInternalsChanged, check_faust_internals
from stream_app.worker.timing import PREFLIGHT_TIMEOUT


class PreflightError(RuntimeError):
    """The worker cannot run with this setup; the message says why and what to do."""


def preflight(config: StreamConfig) -> BrokerTraits:
    """The broker's traits, once the setup is known to work; raises `PreflightError`."""
    try:
        check_faust_internals()
    except FaustInternalsChanged as exc:
        raise PreflightError(str(exc)) from None
    try:
        broker, missing = asyncio.run(_ask(config))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise PreflightError(f"no answer from the broker at {config.broker}: {exc!r}") from None
    if missing:
        raise PreflightError(
            f"topics missing on {config.broker}: {', '.join(missing)}; create them first "
            f"with `tokenpool topics create` (same --broker, --app-id and topic names)"
        )
    if config.guarantee == "exactly_once" and not broker.transactions:
        raise PreflightError(
            f"--guarantee exactly_once needs Kafka transactions, and this broker "
            f"({broker.name}) has none: use at_least_once here"
        )
    return broker


async def _ask(config: StreamConfig) -> tuple[BrokerTraits, list[str]]:
    broker = await asyncio.wait_for(detect_broker(config), PREFLIGHT_TIMEOUT)
    return broker, await missing_topics(config, timeout=PREFLIGHT_TIMEOUT)
