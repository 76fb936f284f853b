"""The worker's HTTP surface: `/metrics` (Prometheus) and `/health`, nothing else."""

from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.web.base import BlueprintManager
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rules.forecast import HOUR, consumed_since, exhaustion_eta

RETURNING_WITHIN = (("1h", HOUR), ("24h", 24 * HOUR), ("7d", 7 * 24 * HOUR))
"""`passes_returning{within}` horizons: the next hour, day and week."""
ETA_HORIZON = 28 * 24 * HOUR
"""An exhaustion further away than one pass lifetime is no forecast: the series is absent."""


class PoolCollector(Collector):
    """Pool figures computed at scrape time from the partitions this worker owns now,
    so a group moved away by a rebalance disappears with its partition."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.lifetime = int(worker.rules.pass_lifetime.total_seconds() * 1_000_000)

    def collect(self) -> Any:
        g = {
            name: GaugeMetricFamily(f"tokenpool_{name}", text, labels=["group"])
            for name, text in (
                ("pool_capacity_passes", "Login access passes the group's tokens buy."),
                ("pool_available_passes", "Passes available to consume now."),
                ("pool_in_use_passes", "Passes consumed and not yet returned."),
                ("pool_headroom_ratio", "Available passes as a share of capacity."),
                ("open_sessions", "Sessions open now."),
            )
        }
        returning = GaugeMetricFamily(
            "tokenpool_passes_returning",
            "Passes due back to the pool within the horizon, from the return calendar.",
            labels=["group", "within"],
        )
        eta = GaugeMetricFamily(
            "tokenpool_pool_exhaustion_eta_seconds",
            "Seconds until no pass is available at the last hour's consumption rate, "
            "counting scheduled returns; absent when not within 28 days.",
            labels=["group"],
        )
        late = CounterMetricFamily(
            "tokenpool_late_events",
            "Events older than their group's clock, applied at the clock.",
            labels=["group"],
        )
        consumed = CounterMetricFamily(
            "tokenpool_passes_consumed", "Passes consumed.", labels=["group", "reason"]
        )
        returned = CounterMetricFamily(
            "tokenpool_passes_returned", "Passes returned to their pool.", labels=["group"]
        )
        denied = CounterMetricFamily(
            "tokenpool_access_denied", "Sessions denied.", labels=["group", "reason"]
        )
        for task in list(self.worker.tasks.values()):
            for group, pool in list(task.engine.pools.items()):
                rec = pool.record
                cap, avail = pool.capacity, pool.available
                g["pool_capacity_passes"].add_metric([group], cap)
                g["pool_available_passes"].add_metric([group], avail)
                g["pool_in_use_passes"].add_metric([group], rec.in_use)
                g["pool_headroom_ratio"].add_metric([group], avail / cap if cap else 0.0)
                g["open_sessions"].add_metric([group], rec.open_sessions)
                consumed.add_metric([group, "login"], rec.consumed_login)
                consumed.add_metric([group, "renewal"], rec.consumed_renewal)
                returned.add_metric([group], rec.returned)
                denied.add_metric([group, "pool_exhausted"], rec.denied_pool_exhausted)
                denied.add_metric([group, "too_many_sessions"], rec.denied_too_many_sessions)
                denied.add_metric([group, "no_allocation"], rec.denied_no_allocation)
                late.add_metric([group], rec.late_events)
                now = rec.clock
                if now is None:
                    continue
                for label, horizon in RETURNING_WITHIN:
                    returning.add_metric([group, label], pool.returning_within(now, horizon))
                calendar = pool.returns_calendar()
                rate = consumed_since(calendar, now, self.lifetime, HOUR)
                due = exhaustion_eta(
                    avail, calendar, now, rate, min(HOUR, self.lifetime), ETA_HORIZON
                )
                if due is not None:
                    eta.add_metric([group], due / 1_000_000)
        yield from g.values()
        yield returning
        yield eta
        yield late
        yield consumed
        yield returned
        yield denied


class InputCollector(Collector):
    """Lag of the session topics, which the worker reads outside the consumer group
    (Faust's `faust_topic_partition_*` offsets cover the other inputs): the end of each
    owned partition and where the state's last durable checkpoint stops in it."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Any:
        end = GaugeMetricFamily(
            "tokenpool_input_end_offset",
            "Offset the next record written to the input partition takes (last fetch).",
            labels=["topic", "partition"],
        )
        durable = GaugeMetricFamily(
            "tokenpool_input_durable_offset",
            "Offset of the first input record the durable state has not applied: where "
            "a restart reads from. Lag is the end offset minus this.",
            labels=["topic", "partition"],
        )
        worker = self.worker
        for partition in sorted(worker.tasks):
            offsets = worker.durable.get(partition, {})
            for topic in worker.session_topics:
                labels = [topic, str(partition)]
                durable.add_metric(labels, offsets.get(worker.rank[topic], -1) + 1)
                high = worker.reader.highwater(topic, partition)
                if high is not None:
                    end.add_metric(labels, high)
        yield end
        yield durable


REJECT_REASONS = ("invalid", "future_timestamp")
"""Dead-letter reason codes: the `reason` label of `events_rejected_total`."""


class EventCounters:
    """Per-process input counters: what arrived and what was turned away, by topic.

    Every series exists at 0 from the start: a counter first seen at 1 shows no
    `increase()`, so the first rejection would page no one."""

    def __init__(self, registry: CollectorRegistry, topics: list[str]) -> None:
        self.events = Counter(
            "tokenpool_events", "Input records received.", ["topic"], registry=registry
        )
        self.rejected = Counter(
            "tokenpool_events_rejected",
            "Input records sent to the dead-letter topic.",
            ["topic", "reason"],
            registry=registry,
        )
        for topic in topics:
            self.events.labels(topic)
            for reason in REJECT_REASONS:
                self.rejected.labels(topic, reason)
        self.checkpoints = Histogram(
            "tokenpool_checkpoint_duration_seconds",
            "Time to make one partition's checkpoint durable: outputs, state records "
            "and dead letters acknowledged by the broker (one transaction under "
            "exactly_once).",
            buckets=CHECKPOINT_BUCKETS,
            registry=registry,
        )
        self.checkpoint_records = Counter(
            "tokenpool_checkpoint_records",
            "Records written by checkpoints, by kind: outputs, and state (commit and "
            "update records of the state changelog).",
            ["kind"],
            registry=registry,
        )
        for kind in ("outputs", "state"):
            self.checkpoint_records.labels(kind)


CHECKPOINT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def install(worker: Any) -> CollectorRegistry:
    """Serve the pool figures, the input counters and Faust's own sensors (`faust_*`:
    messages, table operations, commit latency, end and committed offsets for lag)."""
    registry = CollectorRegistry()
    registry.register(PoolCollector(worker))
    registry.register(InputCollector(worker))
    names = worker.config.topics
    worker.counters = EventCounters(registry, [
        names.session_start, names.session_heartbeat, names.session_end, names.allocations,
    ])
    app = worker.app
    # Faust still mounts a status index at "/" with every built-in page turned off:
    # serve only what is registered below.
    app.web.blueprints = BlueprintManager([])
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, "faust"))

    @app.page("/metrics")  # type: ignore[misc]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")  # type: ignore[misc]
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "partitions": sorted(worker.tasks)})

    return registry
