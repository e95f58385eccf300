"""Worker heartbeats: how a web process, maybe on another machine, knows a queue has a worker.

A consumer bootstep (Celery's extension point for the worker's life cycle) writes a heartbeat
for the queues the worker consumes as soon as it consumes them, then every
``GITOPS_WORKER_HEARTBEAT`` seconds, each valid for three intervals; a warm shutdown withdraws
it at once, while a killed worker's heartbeat simply expires. ``/readyz`` counts the current
ones (:meth:`bot.queue.JobQueue.workers`). While the broker connection is down Celery stops and
restarts the consumer's steps, so a worker that cannot reach Redis stops announcing itself.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from celery import bootsteps

from bot.queue import forget_worker, record_heartbeat, redis_client
from bot.settings import Settings

log = logging.getLogger("gitops_bot.worker")

MISSED_HEARTBEATS = 3
"""Heartbeats a worker may miss before it counts as gone."""


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Announces the worker's queues in Redis while it consumes them."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self._client: redis.Redis | None = None
        self._queues: list[str] = []
        self._worker = ""
        self._ttl = 0.0

    def start(self, parent: Any) -> None:
        settings = Settings.from_env()
        assert settings.redis_url, "REDIS_URL is not set"
        if self._client is None:
            self._client = redis_client(settings.redis_url, timeout=max(settings.redis_timeout, 5))
        self._worker = str(parent.hostname)
        self._queues = sorted(queue.name for queue in parent.task_consumer.queues)
        self._ttl = settings.worker_heartbeat * MISSED_HEARTBEATS
        self._beat()
        self._timer = parent.timer.call_repeatedly(settings.worker_heartbeat, self._beat)

    def _beat(self) -> None:
        assert self._client is not None
        try:
            record_heartbeat(self._client, worker=self._worker, queues=self._queues, ttl=self._ttl)
        except redis.RedisError as exc:
            log.warning("could not record the heartbeat of %s: %s", self._worker, exc)

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._client is not None and self._queues:
            # If Redis is away, the heartbeat expires by itself.
            with contextlib.suppress(redis.RedisError):
                forget_worker(self._client, worker=self._worker, queues=self._queues)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
