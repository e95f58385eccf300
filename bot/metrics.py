"""Prometheus metrics of the web process, plus queue figures read from Redis at scrape time.

Under gunicorn several worker processes serve requests, so counters use prometheus-client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``gitops-bot serve`` and the shipped
gunicorn config set it). Jobs are processed in other processes, often on other machines, so
their counts live in Redis (written by the workers) and are read by a collector on each scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.errors import QueueUnavailable
from bot.queue import JobQueue

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WebMetrics:
    """The counters the webhook routes update."""

    def __init__(self) -> None:
        multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values go to files and the exposition registry is built per
        # scrape; otherwise each app gets its own registry (tests build many apps).
        self.registry: CollectorRegistry | None = None if multiproc else CollectorRegistry()
        labels = ["provider", "event"]
        self.received = Counter(
            "gitops_webhooks_received_total",
            "Webhook deliveries received",
            labels,
            registry=self.registry,
        )
        self.rejected = Counter(
            "gitops_webhooks_rejected_total",
            "Deliveries rejected (bad signature, bad payload, too large, queue unavailable)",
            [*labels, "status"],
            registry=self.registry,
        )
        self.ignored = Counter(
            "gitops_webhooks_ignored_total",
            "Deliveries that need no job",
            labels,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "gitops_webhooks_duplicate_total",
            "Redeliveries answered with the original job",
            labels,
            registry=self.registry,
        )
        self.jobs_queued = Counter(
            "gitops_jobs_queued_total", "Jobs queued", ["job"], registry=self.registry
        )

    def exposition(self, queue: JobQueue | None) -> bytes:
        if self.registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        if queue is not None:
            registry.register(QueueCollector(queue))
        return generate_latest(registry)


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


class QueueCollector(Collector):
    """Queue depths, jobs processed, process restarts and live workers, read from Redis at
    scrape time (workers and supervisors write them there, possibly from other machines)."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("gitops_queue_up", "1 when Redis answered this scrape")
        try:
            stats = self._queue.stats()
        except QueueUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("gitops_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for name, count in sorted(stats.depths.items()):
            depth.add_metric([name], count)
        yield depth
        workers = GaugeMetricFamily(
            "gitops_queue_workers",
            "Workers consuming each queue (current heartbeat)",
            labels=["queue"],
        )
        for name, count in sorted(stats.workers.items()):
            workers.add_metric([name], count)
        yield workers
        done = CounterMetricFamily(
            "gitops_jobs_processed", "Jobs workers finished", labels=["job", "outcome"]
        )
        for (job, outcome), count in sorted(stats.processed.items()):
            done.add_metric([job, outcome], count)
        yield done
        restarts = CounterMetricFamily(
            "gitops_process_restarts",
            "Processes a supervisor restarted after they died (embedded Redis, workers, web, beat)",
            labels=["process"],
        )
        for name, count in sorted(stats.restarts.items()):
            restarts.add_metric([name], count)
        yield restarts
        yield from self._deploys()

    def _deploys(self) -> Iterator[Metric]:
        try:
            figures = self._queue.deploys()
        except QueueUnavailable:
            return
        checked = CounterMetricFamily(
            "gitops_deploys_checked",
            "Pushes deployed, by their check against the merged PR's last preview: "
            "as_previewed, differed, not_previewed (none kept), no_pull_request",
            labels=["outcome"],
        )
        for outcome in ("as_previewed", "differed", "not_previewed", "no_pull_request"):
            checked.add_metric([outcome], figures.outcomes.get(outcome, 0))
        yield checked
        paused = GaugeMetricFamily(
            "gitops_deploys_paused",
            "1 per pause set with `gitops-bot pause` (repository and app are * for every one)",
            labels=["repository", "app"],
        )
        for pause in figures.pauses:
            paused.add_metric([pause.repository, pause.app], 1)
        yield paused
        yield GaugeMetricFamily(
            "gitops_deploys_waiting_for_resume",
            "Pushes with apps paused, waiting for `gitops-bot resume`",
            value=figures.parked,
        )
