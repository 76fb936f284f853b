"""The worker's HTTP surface: `/metrics` (Prometheus) and `/health`, nothing else."""

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class PoolCollector(Collector):
    """Pool figures computed at scrape time from the partitions this worker owns now,
    so a group moved away by a rebalance disappears with its partition."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

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
        yield from g.values()
        yield consumed
        yield returned
        yield denied


def install(worker: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PoolCollector(worker))
    app = worker.app

    @app.page("/metrics")  # type: ignore[misc]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")  # type: ignore[misc]
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "partitions": sorted(worker.tasks)})

    return registry
