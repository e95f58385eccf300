"""gunicorn settings for the web process (the Procfile's ``web`` line uses this file).

Threads per worker let slow clients not block others; the Prometheus multiprocess directory is
set up here, before any worker imports prometheus-client, and dead workers' files are marked.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gitops-bot-metrics-")

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("GITOPS_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = 8
timeout = 30
graceful_timeout = 20
keepalive = 5


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
