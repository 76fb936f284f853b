"""`tokenpool reconcile`: poll QRS, compare with tokenpool, export the drift.

Every poll reads Qlik's passes in use (QRS) and tokenpool's (the workers' /metrics,
or a replay state file), computes the drift per group, logs the users behind any
non-zero drift and serves the figures on its own /metrics. A failed poll keeps the
last figures, counts the error and says why.
"""

import asyncio
import contextlib
import logging
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.qlik.group_mapping import GroupMapping
from adapters.qlik.qrs import (
    AccessTypeOverview,
    QrsFormatError,
    Skipped,
    decode_overview,
    decode_usage,
    passes_in_use,
)
from adapters.qlik.qrs_client import QrsClient, QrsError
from adapters.qlik.reconcile import (
    GroupDrift,
    SourceError,
    compute_drift,
    in_use_from_metrics,
    in_use_from_state,
)

log = logging.getLogger("tokenpool.qlik.reconcile")

USAGE_PATH = "/qrs/license/loginaccessusage/full"
OVERVIEW_PATH = "/qrs/license/accesstypeoverview"


class ReconcileResult:
    """The latest poll's figures, read by the collector at scrape time."""

    def __init__(self) -> None:
        self.drift: list[GroupDrift] = []
        self.overview: AccessTypeOverview | None = None
        self.last_success: float | None = None
        self.errors: dict[str, int] = {"qrs": 0, "tokenpool": 0}
        self.skipped: Counter[tuple[str, str]] = Counter()
        """Records left out of polls so far, by (endpoint, reason)."""


class ReconcileCollector(Collector):
    def __init__(self, result: ReconcileResult) -> None:
        self.result = result

    def collect(self) -> Iterator[Metric]:
        r = self.result
        drift = GaugeMetricFamily("tokenpool_reconcile_drift_passes", "Passes in use Qlik "
                                  "counts minus those tokenpool counts.", labels=["group"])
        qrs = GaugeMetricFamily("tokenpool_reconcile_qrs_in_use_passes",
                                "Passes in use according to QRS.", labels=["group"])
        own = GaugeMetricFamily("tokenpool_reconcile_tokenpool_in_use_passes",
                                "Passes in use according to tokenpool.", labels=["group"])
        for row in r.drift:
            drift.add_metric([row.group], row.drift)
            qrs.add_metric([row.group], row.qrs_in_use)
            own.add_metric([row.group], row.tokenpool_in_use)
        yield from (drift, qrs, own)
        if r.overview is not None:
            tokens = GaugeMetricFamily("tokenpool_reconcile_qrs_tokens",
                                       "Token figures of QRS accesstypeoverview.",
                                       labels=["kind"])
            for kind, value in token_figures(r.overview):
                tokens.add_metric([kind], value)
            yield tokens
        if r.last_success is not None:
            yield GaugeMetricFamily("tokenpool_reconcile_last_success_timestamp_seconds",
                                    "When the last poll succeeded.", value=r.last_success)
        errors = CounterMetricFamily("tokenpool_reconcile_errors", "Failed polls by source.",
                                     labels=["source"])
        for source, n in sorted(r.errors.items()):
            errors.add_metric([source], n)
        yield errors
        skipped = CounterMetricFamily(
            "tokenpool_reconcile_skipped_records", "QRS records left out of polls (a null "
            "or unreadable field they need), by endpoint and reason.",
            labels=["endpoint", "reason"])
        for (endpoint, reason), n in sorted(r.skipped.items()):
            skipped.add_metric([endpoint, reason], n)
        yield skipped


def token_figures(o: AccessTypeOverview) -> list[tuple[str, float]]:
    """(kind label, figure) of every section the overview has."""
    out = [("total", o.total_tokens), ("available", o.available_tokens)]
    if o.login_access is not None:
        out += [("login_access_allocated", o.login_access.allocated_tokens),
                ("login_access_used", o.login_access.used_tokens),
                ("login_access_unavailable", o.login_access.unavailable_tokens)]
    if o.user_access is not None:
        out += [("user_access_allocated", o.user_access.allocated_tokens),
                ("user_access_used", o.user_access.used_tokens),
                ("user_access_quarantined", o.user_access.quarantined_tokens)]
    return out


def fetch_metrics(urls: Sequence[str], timeout: float = 10.0) -> list[str]:
    texts = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                texts.append(response.read().decode("utf-8"))
        except OSError as exc:
            raise SourceError(f"tokenpool metrics {url}: {exc}") from None
    return texts


class Reconciler:
    def __init__(self, client: QrsClient, mapping: GroupMapping, *,
                 metrics_urls: Sequence[str] = (), state_file: Path | None = None,
                 pass_lifetime: timedelta = timedelta(days=28)) -> None:
        if not metrics_urls and state_file is None:
            raise ValueError("give tokenpool's figures: --metrics URL (each worker) or "
                             "--state FILE")
        self.client = client
        self.mapping = mapping
        self.metrics_urls = list(metrics_urls)
        self.state_file = state_file
        self.pass_lifetime = pass_lifetime
        self.result = ReconcileResult()

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        registry.register(ReconcileCollector(self.result))
        return registry

    async def tokenpool_in_use(self) -> dict[str, int]:
        if self.state_file is not None:
            try:
                body = await asyncio.to_thread(self.state_file.read_bytes)
            except OSError as exc:
                raise SourceError(f"state file: {exc}") from None
            return in_use_from_state(body)
        return in_use_from_metrics(await asyncio.to_thread(fetch_metrics, self.metrics_urls))

    async def poll(self, now: datetime | None = None) -> list[GroupDrift]:
        """One comparison; raises QrsError / SourceError (counted) when a side fails."""
        try:
            usage = decode_usage(await self.client.get(USAGE_PATH))
            overview = decode_overview(await self.client.get(OVERVIEW_PATH))
        except (QrsError, QrsFormatError):
            self.result.errors["qrs"] += 1
            raise
        try:
            own = await self.tokenpool_in_use()
        except SourceError:
            self.result.errors["tokenpool"] += 1
            raise
        for section in overview.missing_sections():
            log.warning("accesstypeoverview has no %s: its token figures are not exported "
                        "(a licence without tokens, or a QRS version that names it "
                        "differently)", section)
        counted = passes_in_use(usage, self.mapping, now or datetime.now(UTC),
                                self.pass_lifetime)
        self._skipped("loginaccessusage", usage.skipped + counted.skipped)
        for user in sorted(counted.unmapped):
            log.warning("QRS counts a pass for %s, who matches no group rule", user)
        rows = compute_drift(counted.groups, own)
        for row in rows:
            if row.drift:
                users = ", ".join(f"{u} ({n})" for u, n in row.users) or "none"
                log.warning("drift group=%s qrs=%d tokenpool=%d drift=%+d; users Qlik counts "
                            "passes for: %s", row.group, row.qrs_in_use, row.tokenpool_in_use,
                            row.drift, users)
        self.result.drift, self.result.overview = rows, overview
        self.result.last_success = time.time()
        return rows

    def _skipped(self, endpoint: str, skipped: Sequence[Skipped]) -> None:
        for s in sorted(skipped, key=lambda s: s.index):
            self.result.skipped[(endpoint, s.reason)] += 1
            log.warning("skipped QRS record endpoint=%s index=%d reason=%s: %s", endpoint,
                        s.index, s.reason, s.detail)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                rows = await self.poll()
                log.info("reconciled groups=%d drifting=%d", len(rows),
                         sum(1 for r in rows if r.drift))
            except (QrsError, QrsFormatError, SourceError) as exc:
                log.error("reconcile failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def format_table(rows: Sequence[GroupDrift]) -> str:
    lines = [f"{'GROUP':<24} {'QRS':>6} {'TOKENPOOL':>9} {'DRIFT':>6}  USERS (QRS)"]
    for r in rows:
        users = ", ".join(f"{u} ({n})" for u, n in r.users[:5])
        lines.append(f"{r.group:<24} {r.qrs_in_use:>6} {r.tokenpool_in_use:>9} "
                     f"{r.drift:>+6}  {users}")
    return "\n".join(lines)
