"""gunicorn settings for the web process (the Procfile's ``web`` line and ``gitops-bot serve``,
which binds the socket itself and passes it as ``--bind fd://N``, use this file).

Threads per worker let slow clients not block others; the Prometheus multiprocess directory is
set up here, before any worker imports prometheus-client, and dead workers' files are marked.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from bot.settings import Settings

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gitops-bot-metrics-")

_settings = Settings.from_env()  # malformed values stop gunicorn here, naming the variable

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_workers
worker_class = "gthread"
threads = _settings.web_threads
timeout = 30
graceful_timeout = 20
keepalive = 5
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): every
# other gunicorn of the user — a second bot, the test suite's parallel bots — takes it over and
# removes it when it stops. The bot's web server is supervised by `serve` (or the platform),
# not through that socket.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
