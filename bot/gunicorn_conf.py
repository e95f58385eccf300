"""gunicorn settings for the web process (the Procfile's ``web`` line and ``gitops-bot serve``,
which binds the socket itself and passes it as ``--bind fd://N``, use this file).

Threads per worker let slow clients not block others; the Prometheus multiprocess directory is
set up here, before any worker imports prometheus-client, and dead workers' files are marked.
gunicorn logs through the bot's logging set-up (``GITOPS_LOG_FORMAT``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from gunicorn.glogging import Logger

from bot.logs import setup_logging
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
loglevel = _settings.log_level.lower()
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): every
# other gunicorn of the user — a second bot, the test suite's parallel bots — takes it over and
# removes it when it stops. The bot's web server is supervised by `serve` (or the platform),
# not through that socket.
control_socket_disable = True


class GunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's own lines (start-up, worker timeouts) through the bot's logging set-up, in
    ``GITOPS_LOG_FORMAT`` like every other line of the web process."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
        setup_logging(_settings, component="web")


logger_class = GunicornLogger


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
