"""Worker heartbeats: one beat, read in two places.

A consumer bootstep (Celery's extension point for the worker's life cycle) beats as soon as the
worker consumes its queues, then every ``GITOPS_WORKER_HEARTBEAT`` seconds, from the worker's
main event loop. Each beat

* records the worker's queues in Redis, valid for three intervals: ``/readyz`` counts the
  current ones (:meth:`bot.queue.JobQueue.workers`), so a web process on another machine knows a
  queue has a worker. A warm shutdown withdraws it at once; a killed worker's simply expires;
* touches this worker's liveness file in ``<GITOPS_DATA_DIR>/liveness/``, which the container's
  liveness probe reads (:mod:`workers.liveness`): a hung main process stops touching it.

While the broker connection is down Celery stops and restarts the consumer's steps, so a worker
that cannot reach Redis stops beating in both places. The liveness file is also touched when the
worker process starts, before it connects, so a worker that never connects looks stale rather
than absent.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import redis
from celery import bootsteps

from bot.queue import forget_worker, record_heartbeat, redis_client
from bot.settings import Settings
from workers.liveness import heartbeat_dir

log = logging.getLogger("gitops_bot.worker")

MISSED_HEARTBEATS = 3
"""Heartbeats a worker may miss before it counts as gone."""


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Announces the worker's queues in Redis and touches its liveness file while it
    consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self._client: redis.Redis | None = None
        self._queues: list[str] = []
        self._worker = str(parent.hostname)
        self._ttl = 0.0
        self._liveness = heartbeat_dir(Settings.from_env()) / _file_name(self._worker)
        self._touch()  # a worker that never connects must look stale, not absent

    def start(self, parent: Any) -> None:
        settings = Settings.from_env()
        assert settings.redis_url, "REDIS_URL is not set"
        if self._client is None:
            self._client = redis_client(settings.redis_url, timeout=max(settings.redis_timeout, 5))
        self._queues = sorted(queue.name for queue in parent.task_consumer.queues)
        self._ttl = settings.worker_heartbeat * MISSED_HEARTBEATS
        self._beat()
        self._timer = parent.timer.call_repeatedly(settings.worker_heartbeat, self._beat)

    def _beat(self) -> None:
        assert self._client is not None
        self._touch()
        try:
            record_heartbeat(self._client, worker=self._worker, queues=self._queues, ttl=self._ttl)
        except redis.RedisError as exc:
            log.warning("could not record the heartbeat of %s: %s", self._worker, exc)

    def _touch(self) -> None:
        try:
            self._liveness.parent.mkdir(parents=True, exist_ok=True)
            self._liveness.touch()
        except OSError as exc:  # a full or read-only disk: the probe will say the worker is dead
            log.warning("cannot write the liveness file %s: %s", self._liveness, exc)

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


def _file_name(hostname: str) -> str:
    """The worker's node name (``previews@host``) as a file name."""
    return hostname.replace(os.sep, "_")
