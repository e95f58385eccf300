"""Test helpers loaded into a real worker with ``--include``: a slow task for the killed-worker
test (production jobs are fast enough that no test could kill a worker in the middle of one),
and a ``task_prerun`` receiver that records a header, as a tracing integration reads it.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_prerun

from workers.celery_app import app


@task_prerun.connect
def record_trace_header(task_id: str, task: Any, **_: Any) -> None:
    """Store the ``x-test-trace`` header the job arrived with, if any."""
    trace = task.request.get("x-test-trace")
    if trace is not None:
        redis.Redis.from_url(os.environ["REDIS_URL"]).set(f"trace:{task_id}", trace)


@app.task(name="gitops.test.slow", bind=True)  # type: ignore[misc]
def slow(self: object, key: str, seconds: float) -> None:
    """Records each attempt; the first one sleeps long enough to be killed."""
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    attempt = int(store.incr(f"{key}:attempts"))
    store.set(f"{key}:pid:{attempt}", os.getpid())
    if attempt == 1:
        time.sleep(seconds)
    store.set(f"{key}:done", attempt)
