"""A slow task for the killed-worker test, loaded into a real worker with ``--include``.

It lives in the tests because production jobs are fast enough that no test could kill a worker
in the middle of one.
"""

from __future__ import annotations

import os
import time

import redis

from workers.celery_app import app


@app.task(name="gitops.test.slow", bind=True)  # type: ignore[misc]
def slow(self: object, key: str, seconds: float) -> None:
    """Records each attempt; the first one sleeps long enough to be killed."""
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    attempt = int(store.incr(f"{key}:attempts"))
    store.set(f"{key}:pid:{attempt}", os.getpid())
    if attempt == 1:
        time.sleep(seconds)
    store.set(f"{key}:done", attempt)
