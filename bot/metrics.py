"""Prometheus metrics: what each process records, and the ``/metrics`` that serve them.

Two kinds of figures, kept where they can be told truly:

* **Events, counted where they happen** (prometheus-client counters and histograms): webhooks
  received by a web process; jobs run, their queue wait and run time, objects applied and
  pruned, forge API calls, missed work the catch-up found — in the worker process that ran the
  job. Web and worker processes are several (gunicorn workers, Celery's prefork children), so
  each records into prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``)
  and the process serving ``/metrics`` adds the files up at each scrape.
* **The installation's state, kept in Redis** and read by the web's ``/metrics`` at scrape time:
  queue depths and live workers, jobs processed by outcome, process restarts, apps drifted
  per repository (:func:`record_drifted_apps`), merges that differed from their preview
  (:func:`count_differed_from_preview`). They are true whichever machine a job ran on, and one
  scrape of one web pod shows them.

Where they are served:

* the web's ``/metrics`` (:class:`WebMetrics`): intake counters, the Redis figures, and every
  event metric written to its multiprocess directory. ``gitops-bot serve`` gives its workers
  the same directory, so on one machine the web's ``/metrics`` is the whole picture.
* ``gitops-bot worker`` with ``GITOPS_WORKER_METRICS_PORT``: the event metrics of its Celery
  processes (:func:`serve_worker_metrics`), served from the supervising ``gitops-bot worker``
  process — the one process that outlives every Celery worker and pool process it restarts.

The API jobs call (``count_applied``, ``count_missed_work``, ``record_drifted_apps``,
``count_differed_from_preview``, ``count_forge_request``) imports neither Celery nor Flask, so
:mod:`bot.jobs`, :mod:`bot.cluster` and :mod:`bot.forges` use it freely.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.errors import QueueUnavailable

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    import redis

    from bot.model import RunResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Jobs take seconds (a preview: checkout, render, dry-run, post) to minutes (a deploy waiting
# for health), up to GITOPS_JOB_TIMEOUT (default 1800 s); waits in the queue are sub-second
# when workers are free and minutes when they are not.
QUEUE_WAIT_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS: Final = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600, 1800)
STEP_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)

REGISTRY = CollectorRegistry()
"""The event metrics of jobs (queue wait, run time, applied objects, forge calls). In
multiprocess mode their values go to files and this registry is not what is served."""

JOB_QUEUE_WAIT = Histogram(
    "gitops_job_queue_wait_seconds",
    "Seconds a job waited in its queue before a worker started it (a retry: since it was due)",
    ["job"],
    buckets=QUEUE_WAIT_BUCKETS,
    registry=REGISTRY,
)
JOB_RUN = Histogram(
    "gitops_job_run_seconds",
    "Seconds one run of a job took, by job type and outcome (its _count: jobs run)",
    ["job", "outcome"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
JOB_STEP = Histogram(
    "gitops_job_step_seconds",
    "Seconds a job spent in each step (checkout, render, diff, dry_run, post, ...)",
    ["job", "step"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)
OBJECTS_APPLIED = Counter(
    "gitops_objects_applied",
    "Objects deployed by server-side apply, by target and what the apply did "
    "(created, updated, unchanged)",
    ["target", "change"],
    registry=REGISTRY,
)
OBJECTS_PRUNED = Counter(
    "gitops_objects_pruned",
    "Objects deleted from a target because Git no longer declares them",
    ["target"],
    registry=REGISTRY,
)
FORGE_REQUESTS = Counter(
    "gitops_forge_requests",
    "HTTP requests to the forge's API by provider and answer (the status code, or `error` when "
    "none came: refused, reset, timed out); each retry counts",
    ["provider", "status"],
    registry=REGISTRY,
)
CATCHUP_MISSED = Counter(
    "gitops_catchup_missed_work",
    "Work the periodic catch-up found undone and queued, by job (deploy: a default branch head "
    "newer than an app's last deploy; preview: an open PR without a preview of its merge "
    "result); anything above zero means webhooks are being missed",
    ["job"],
    registry=REGISTRY,
)

DRIFTED_KEY: Final = "gitops:metrics:apps_drifted"
"""Hash of repository → ``{"apps": n, "until": unix time}`` (the drift job's last finding)."""
DIFFERED_KEY: Final = "gitops:metrics:differed_from_preview"
"""Hash of repository → merges whose deploy changed something else than their last preview."""


# --- recording (any process) ---------------------------------------------------------------------


def observe_queue_wait(job_type: str, seconds: float) -> None:
    JOB_QUEUE_WAIT.labels(job_type).observe(max(seconds, 0.0))


def observe_job(
    job_type: str,
    outcome: str,
    seconds: float,
    *,
    steps: Mapping[str, float] | None = None,
) -> None:
    """One run of a job ended with ``outcome`` after ``seconds``; ``steps`` are its step
    timings (the job outcome's ``timings``)."""
    JOB_RUN.labels(job_type, outcome).observe(max(seconds, 0.0))
    for step, step_seconds in (steps or {}).items():
        JOB_STEP.labels(job_type, step).observe(max(step_seconds, 0.0))


def queue_wait(queued_at: float | str | None, eta: str | None, now: float) -> float | None:
    """Seconds a job waited: since it was queued (``queued_at``, the publisher's clock), or
    since it was due when it was scheduled for later (``eta``, a retry's ISO 8601 time).
    None when neither is known."""
    due: float | None = None
    if queued_at is not None:
        try:
            due = float(queued_at)
        except ValueError:
            due = None
    if eta:
        try:
            at = datetime.fromisoformat(eta).timestamp()
        except ValueError:
            at = None
        if at is not None:
            due = at if due is None else max(due, at)
    return None if due is None else max(now - due, 0.0)


def count_applied(result: RunResult) -> None:
    """Count what a deploy (not a dry run) did to each target: objects created, updated and
    left unchanged by the apply, and objects pruned."""
    for app in result.apps:
        for change, objects in (
            ("created", app.created),
            ("updated", app.updated),
            ("unchanged", app.unchanged),
        ):
            if objects:
                OBJECTS_APPLIED.labels(app.target, change).inc(len(objects))
        if app.deleted:
            OBJECTS_PRUNED.labels(app.target).inc(len(app.deleted))


def count_forge_request(provider: str, status: int | str) -> None:
    FORGE_REQUESTS.labels(provider, str(status)).inc()


def count_missed_work(job_type: str, count: int = 1) -> None:
    """The catch-up found ``count`` pieces of ``job_type`` work (``deploy``, ``preview``) that
    no webhook had queued, and queued them."""
    if count:
        CATCHUP_MISSED.labels(job_type).inc(count)


# --- the installation's state, in Redis ---------------------------------------------------------


def record_drifted_apps(client: redis.Redis, repository: str, apps: int, *, ttl: float) -> None:
    """The drift job found ``apps`` drifted apps in ``repository`` (0 when none): shown as
    ``gitops_apps_drifted{repository}`` on the web's ``/metrics`` until the next finding, or
    for ``ttl`` seconds (say three drift intervals), so a repository the bot stopped serving
    drops out. Raises ``redis.RedisError``."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.hset(DRIFTED_KEY, repository, json.dumps({"apps": int(apps), "until": now + ttl}))
    pipe.hgetall(DRIFTED_KEY)
    _, found = pipe.execute()
    expired = [name for name, value in found.items() if _drift_entry(value, now) is None]
    if expired:
        client.hdel(DRIFTED_KEY, *expired)


def count_differed_from_preview(client: redis.Redis, repository: str) -> None:
    """A merge to ``repository`` deployed changes its last preview did not show (or did not
    deploy what it showed): ``gitops_merges_differed_from_preview_total{repository}`` on the
    web's ``/metrics``. Raises ``redis.RedisError``."""
    client.hincrby(DIFFERED_KEY, repository, 1)


def _drift_entry(value: bytes | str, now: float) -> int | None:
    try:
        entry = json.loads(value)
        return int(entry["apps"]) if float(entry["until"]) > now else None
    except (ValueError, KeyError, TypeError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- serving ---------------------------------------------------------------------------------------


class QueueSource(Protocol):
    """What the web's exposition reads from :class:`bot.queue.JobQueue` (named here by its
    shape: the jobs and the cluster engine use this module and never load Celery)."""

    @property
    def client(self) -> redis.Redis: ...

    def stats(self) -> Any: ...


class WebMetrics:
    """The counters the webhook routes update, and the web's exposition."""

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

    def exposition(self, queue: QueueSource | None) -> bytes:
        registry = CollectorRegistry()
        if self.registry is None:
            # every process writing to the directory: gunicorn's workers, and under
            # `gitops-bot serve` its Celery workers too
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Forward(self.registry))
            registry.register(_Forward(REGISTRY))
        if queue is not None:
            registry.register(QueueCollector(queue))
        return generate_latest(registry)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry adding up the metric files every process wrote to ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def serve_worker_metrics(port: int, path: str, *, host: str = "0.0.0.0") -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` (every address by default) from a daemon thread:
    the event metrics the worker processes wrote to ``path``. Raises ``OSError`` when the port
    cannot be bound. Stop it with ``shutdown()``."""
    server, _thread = start_http_server(port, addr=host, registry=multiprocess_registry(path))
    return server


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


class QueueCollector(Collector):
    """The installation's figures kept in Redis, read at scrape time (workers and supervisors
    write them there, possibly from other machines): queue depths, live workers, jobs processed,
    process restarts, apps drifted, merges that differed from their preview."""

    def __init__(self, queue: QueueSource) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        import redis  # here: the CLI's apply counts objects through this module without Redis

        up = GaugeMetricFamily("gitops_queue_up", "1 when Redis answered this scrape")
        try:
            stats = self._queue.stats()
            pipe = self._queue.client.pipeline(transaction=False)
            pipe.hgetall(DRIFTED_KEY)
            pipe.hgetall(DIFFERED_KEY)
            drifted, differed = pipe.execute()
        except (QueueUnavailable, redis.RedisError):
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
        yield from _state_metrics(drifted, differed, now=time.time())


def _state_metrics(
    drifted: Mapping[Any, Any], differed: Mapping[Any, Any], *, now: float
) -> Sequence[Metric]:
    apps = GaugeMetricFamily(
        "gitops_apps_drifted",
        "Apps whose live objects differ from their last deployed commit, per repository "
        "(the drift job's last finding)",
        labels=["repository"],
    )
    for repository, value in sorted(drifted.items()):
        count = _drift_entry(value, now)
        if count is not None:
            apps.add_metric([_text(repository)], count)
    merges = CounterMetricFamily(
        "gitops_merges_differed_from_preview",
        "Merges whose deploy changed objects its last preview did not show, or did not change "
        "objects it showed",
        labels=["repository"],
    )
    for repository, value in sorted(differed.items()):
        merges.add_metric([_text(repository)], int(value))
    return [apps, merges]
