"""Every topic the service reads and writes: names, layout, settings, and their creation.

Faust is told not to create topics (`topic_allow_declare=False`): on a cluster with
auto-creation off, as production clusters have it, nothing would create them, and with
it on they would get the broker's defaults (one partition, deleted after seven days).
So `create_topics` creates all of them, the two table changelogs included, each with the
settings its role needs:

| role | topics | settings |
|---|---|---|
| input | session topics, allocations | retention asked for (`--input-retention`) |
| output | pass-consumed, ..., dead letters | retention asked for (`--output-retention`) |
| internal | grants, feedback | seven days: applied within seconds by a running worker |
| internal | ticks | one hour, in one-hour segments: a tick means nothing a second later |
| changelog | state, ledger | compacted forever, records up to `MAX_RECORD_BYTES` |

It is idempotent. Existing topics keep their data and are checked: a wrong partition
count of a co-partitioned topic is an error; the service's own topics (internal and
changelogs) get their settings back when they differ; a shorter retention than asked
on an input or output topic is reported and left alone (shortening or lengthening a
user's retention is the user's call).
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream_app.config import INPUT_RETENTION, OUTPUT_RETENTION, StreamConfig
from stream_app.kafka.client import client_kwargs

log = logging.getLogger(__name__)

ALLOCATIONS_PARTITIONS = 1
"""The allocations topic is the token ledger's single-writer path: one partition keeps
every allocation in one total order, read by every worker."""
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest record the worker writes to its changelogs (and the producer's request size):
a tick after downtime can fire thousands of timers in one input, and the commit record
of that input holds every record it updates; the ledger is one record holding every
UAP holder. Kafka's default limit is 1 MiB, so the changelogs are created with this."""
INTERNAL_RETENTION = timedelta(days=7)
TICKS_RETENTION = timedelta(hours=1)
REPLICATION = 3
"""Replicas per topic when the cluster has that many brokers (fewer otherwise)."""

_DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs' source of a setting made on the topic itself."""


class TopicSpec(NamedTuple):
    name: str
    partitions: int
    role: str
    """`input`, `output`, `internal` (written and read by the workers) or `changelog`."""
    configs: Mapping[str, str]


class Retention(NamedTuple):
    inputs: timedelta = INPUT_RETENTION
    outputs: timedelta = OUTPUT_RETENTION


DEFAULT_RETENTION = Retention()


class TopicCreationError(RuntimeError):
    """The broker refused a topic, or an existing topic has the wrong partition count."""


class TopicReport(NamedTuple):
    created: list[str]
    partitions: dict[str, int]
    """Partitions of every topic of the service, as the broker has them now."""
    replication: int
    """Replicas of the topics created now."""
    changed: dict[str, dict[str, str]]
    """Existing topics of the service whose settings were put back, and to what."""
    warnings: list[str]


# --------------------------------------------------------------------------- names


def grants_topic(config: StreamConfig) -> str:
    return f"{config.app_id}-grants"


def ticks_topic(config: StreamConfig) -> str:
    return f"{config.app_id}-ticks"


def feedback_topic(config: StreamConfig) -> str:
    """Group partitions → ledger: tokens still counted, last use of removed UAPs."""
    return f"{config.app_id}-feedback"


def changelog_topic(config: StreamConfig, table: str) -> str:
    """Faust's name for a table's changelog (`<app id>-<table>-changelog`)."""
    return f"{config.app_id}-{table}-changelog"


def input_topic_names(config: StreamConfig) -> list[str]:
    """Source topics, in the order that breaks timestamp ties (`schemas.INPUT_TOPICS`)."""
    t = config.topics
    return [t.allocations, t.session_start, t.session_heartbeat, t.session_end]


def session_topic_names(config: StreamConfig) -> list[str]:
    """The keyed-by-group inputs, co-partitioned with the internal topics."""
    t = config.topics
    return [t.session_start, t.session_heartbeat, t.session_end]


def internal_topic_names(config: StreamConfig) -> list[str]:
    return [grants_topic(config), ticks_topic(config)]


def output_topic_names(config: StreamConfig) -> list[str]:
    t = config.topics
    return [t.pass_consumed, t.pass_returned, t.access_denied, t.allocation_rejected,
            t.dead_letters]


def _ms(span: timedelta) -> str:
    return str(int(span.total_seconds() * 1000))


def topic_specs(config: StreamConfig, retention: Retention = DEFAULT_RETENTION) -> list[TopicSpec]:
    """Every topic the service reads or writes, Faust's table changelogs included."""
    n = config.partitions
    inputs = {"retention.ms": _ms(retention.inputs)}
    outputs = {"retention.ms": _ms(retention.outputs)}
    internal = {"retention.ms": _ms(INTERNAL_RETENTION)}
    ticks = {"retention.ms": _ms(TICKS_RETENTION), "segment.ms": _ms(TICKS_RETENTION)}
    changelog = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)}
    return [
        *(TopicSpec(name, n, "input", inputs) for name in session_topic_names(config)),
        TopicSpec(config.topics.allocations, ALLOCATIONS_PARTITIONS, "input", inputs),
        TopicSpec(feedback_topic(config), ALLOCATIONS_PARTITIONS, "internal", internal),
        TopicSpec(grants_topic(config), n, "internal", internal),
        TopicSpec(ticks_topic(config), n, "internal", ticks),
        TopicSpec(changelog_topic(config, "state"), n, "changelog", changelog),
        TopicSpec(changelog_topic(config, "ledger"), 1, "changelog", changelog),
        *(TopicSpec(name, n, "output", outputs) for name in output_topic_names(config)),
    ]


# --------------------------------------------------------------------------- creation


async def create_topics(config: StreamConfig, *, retention: Retention = DEFAULT_RETENTION,
                        timeout: float = 30.0) -> TopicReport:
    """Create every topic of the service that is missing; check the ones that exist.

    Raises `TopicCreationError` when the broker refuses a topic or an existing one has
    a partition count the rules cannot work with: allocations must have exactly one,
    and the session, internal and state topics all `config.partitions`
    (co-partitioning). A wrong output partition count only gets a warning.
    """
    specs = topic_specs(config, retention)
    admin = AIOKafkaAdminClient(
        **client_kwargs(config), request_timeout_ms=max(1000, int(timeout * 1000))
    )

    async def run() -> TopicReport:
        try:
            await admin.start()
            replication = config.replication_factor or min(
                REPLICATION, len((await admin.describe_cluster())["brokers"]))
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, replication, topic_configs=dict(s.configs))
                 for s in specs]
            )
            created, existed, failed = [], [], []
            for item in response.topic_errors:
                name, code = item[0], item[1]
                message = item[2] if len(item) > 2 else None
                if code == 0:
                    created.append(name)
                    log.info("topic created topic=%s replicas=%d", name, replication)
                elif code == TopicAlreadyExistsError.errno:
                    existed.append(name)
                else:
                    failed.append(f"topic={name} error_code={code} ({message})")
            if failed:
                raise TopicCreationError("broker refused topics: " + "; ".join(failed))
            await _wait_for_leaders(admin, {s.name: s.partitions for s in specs
                                            if s.name in created})
            partitions = await _describe(admin, [s.name for s in specs])
            _check_partitions(specs, {n: partitions[n] for n in existed if n in partitions})
            existing = [s for s in specs if s.name in existed]
            changed, warnings = await _check_configs(admin, existing)
            return TopicReport(created, partitions, replication, changed, warnings)
        finally:
            await admin.close()

    return await asyncio.wait_for(run(), timeout)


async def describe_partitions(
    config: StreamConfig, names: Iterable[str], *, timeout: float = 30.0
) -> dict[str, int]:
    """Partition count of each named topic that exists; missing topics are left out.

    Only existing topics are described: a metadata request for a missing topic makes
    brokers with auto-creation on (Tansu, Kafka's default) create it.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(config))

    async def run() -> dict[str, int]:
        try:
            await admin.start()
            return await _describe(admin, list(names))
        finally:
            await admin.close()

    return await asyncio.wait_for(run(), timeout)


async def topic_configs(config: StreamConfig, names: Iterable[str], *,
                        timeout: float = 30.0) -> dict[str, dict[str, str]]:
    """Every setting of each named topic as the broker reports it (defaults included)."""
    admin = AIOKafkaAdminClient(**client_kwargs(config))

    async def run() -> dict[str, dict[str, str]]:
        try:
            await admin.start()
            described = await _describe_configs(admin, list(names))
            return {name: {k: v for k, (v, _) in entries.items()}
                    for name, entries in described.items()}
        finally:
            await admin.close()

    return await asyncio.wait_for(run(), timeout)


async def missing_topics(config: StreamConfig, *, timeout: float = 30.0) -> list[str]:
    """The service's topics the broker does not have."""
    admin = AIOKafkaAdminClient(**client_kwargs(config))

    async def run() -> list[str]:
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            return [s.name for s in topic_specs(config) if s.name not in existing]
        finally:
            await admin.close()

    return await asyncio.wait_for(run(), timeout)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, wanted: Mapping[str, int]) -> None:
    """Until every partition of the topics just created has a leader: Kafka answers
    CreateTopics before its brokers have the new metadata, and a client that asks at
    once (a worker started right after `topics create`) would find no such topic."""
    pending = dict(wanted)
    while pending:
        try:
            described = await admin.describe_topics(list(pending))
        except KafkaError as exc:
            log.debug("topics not described yet: %r", exc)
            described = []
        for topic in described:
            parts = topic.get("partitions", [])
            if (topic.get("error_code", 0) == 0 and len(parts) == pending.get(topic["topic"])
                    and all(p.get("leader", -1) >= 0 for p in parts)):
                pending.pop(topic["topic"], None)
        if pending:
            await asyncio.sleep(0.1)


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(await admin.list_topics())
    names = [n for n in names if n in existing]
    if not names:
        return {}
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}


async def _describe_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, tuple[str, bool]]]:
    """Topic → setting → (value, set on the topic itself)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    result: dict[str, dict[str, tuple[str, bool]]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            error_code, _, _, name, entries = resource[:5]
            if error_code != 0:
                raise TopicCreationError(f"cannot read the settings of topic={name} "
                                         f"(error_code={error_code})")
            result[name] = {e[0]: (e[1], e[3] == _DYNAMIC_TOPIC_CONFIG) for e in entries}
    return result


def _check_partitions(specs: list[TopicSpec], actual: Mapping[str, int]) -> None:
    wrong = []
    for spec in specs:
        have = actual.get(spec.name)
        if have is None or have == spec.partitions:
            continue
        if spec.role == "output":
            log.warning("existing topic has other partitions topic=%s partitions=%d wanted=%d",
                        spec.name, have, spec.partitions)
        else:
            wrong.append(f"topic={spec.name} partitions={have} wanted={spec.partitions}")
    if wrong:
        raise TopicCreationError(
            "existing topics have the wrong partition count (allocations needs exactly 1; "
            "session, internal and state topics must all match --partitions): "
            + "; ".join(wrong)
        )


async def _check_configs(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Put the service's own settings back on its internal topics and changelogs; report
    inputs and outputs kept shorter than asked."""
    described = await _describe_configs(admin, [s.name for s in specs])
    changed: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for spec in specs:
        have = described.get(spec.name, {})
        if spec.role in ("input", "output"):
            asked = int(spec.configs["retention.ms"])
            value = have.get("retention.ms", ("-1", False))[0]
            kept = int(value)
            if kept != -1 and kept < asked:
                warnings.append(
                    f"topic={spec.name} keeps records {_days(kept)}, shorter than the "
                    f"{_days(asked)} asked; left as it is (raise it with kafka-configs "
                    f"--alter --add-config retention.ms={asked})"
                )
            continue
        wrong = {k: v for k, v in spec.configs.items() if have.get(k, ("", False))[0] != v}
        if not wrong:
            continue
        # AlterConfigs replaces every setting made on the topic: keep the others.
        kept_configs = {k: v for k, (v, own) in have.items() if own}
        try:
            await _alter(admin, spec.name, {**kept_configs, **spec.configs})
        except (KafkaError, TopicCreationError) as exc:
            warnings.append(f"topic={spec.name} has {wrong} other than the service needs, "
                            f"and the broker refused to change them: {exc}")
            continue
        changed[spec.name] = wrong
        log.warning("topic settings put back topic=%s settings=%s", spec.name, wrong)
    if changed:
        await _wait_for_settings(admin, {s.name: s.configs for s in specs if s.name in changed})
    for warning in warnings:
        log.warning("%s", warning)
    return changed, warnings


async def _wait_for_settings(admin: AIOKafkaAdminClient,
                             wanted: Mapping[str, Mapping[str, str]]) -> None:
    """Until the brokers report the settings just made (they reach them a moment after
    the controller accepted them)."""
    for _ in range(100):
        described = await _describe_configs(admin, list(wanted))
        if all(described.get(name, {}).get(k, ("", False))[0] == v
               for name, configs in wanted.items() for k, v in configs.items()):
            return
        await asyncio.sleep(0.1)
    log.warning("topic settings not reported back yet topics=%s", sorted(wanted))


async def _alter(admin: AIOKafkaAdminClient, name: str, configs: dict[str, str]) -> None:
    responses: Any = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]
    )
    for response in responses:
        for resource in response.resources:
            if resource[0] != 0:
                raise TopicCreationError(f"error_code={resource[0]} ({resource[1]})")


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return f"{days:g} days" if days >= 1 else f"{ms / 3_600_000:g} hours"
