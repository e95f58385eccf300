"""The worker's liveness file: a heartbeat each Celery worker process touches while it consumes.

A consumer bootstep (Celery's documented way to extend a worker) registers a timer on the
worker's event loop once the consumer has connected to Redis and started consuming. Every
``--liveness-interval`` seconds (default 10) the timer sets the mtime of
``<GITOPS_DATA_DIR>/liveness/<worker hostname>``; :mod:`workers.liveness` reads those files.

What a recent heartbeat proves:

* the main process's event loop runs: the timer fires there, so a hung main process stops
  beating. Jobs run in pool child processes, so a long deploy does not;
* the consumer is started: Celery stops the consumer's steps when the Redis connection is lost
  and starts them again after it reconnects (cancelling the old connection's timers), so a
  worker that lost Redis stops beating until it is consuming again.

The file is written once when the worker process starts, before it connects, so a worker that
never manages to connect goes stale too instead of looking absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click
from celery import Celery, bootsteps

from bot.settings import Settings
from workers.liveness import DEFAULT_INTERVAL, heartbeat_dir

log = logging.getLogger("gitops_bot.worker")


def touch(path: Path) -> None:
    """Set ``path``'s mtime to now, creating it (and its directory) when missing."""
    try:
        path.touch()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


class LivenessFile(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches this worker's heartbeat file while the consumer runs."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, liveness_interval: float | None = None, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.interval = float(liveness_interval or DEFAULT_INTERVAL)
        self.path = heartbeat_dir(Settings.from_env()) / _file_name(parent.hostname)
        self.tref: Any = None
        # A worker that never connects must look stale, not absent (see the module docstring).
        touch(self.path)

    def start(self, parent: Any) -> None:
        touch(self.path)
        self.tref = parent.timer.call_repeatedly(self.interval, self._beat, priority=10)

    def _beat(self) -> None:
        try:
            touch(self.path)
        except OSError as exc:  # a full or read-only disk: the probe will say the worker is dead
            log.warning("cannot write the liveness heartbeat %s: %s", self.path, exc)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


def _file_name(hostname: str) -> str:
    """The worker's node name (``previews@host``) as a file name."""
    return hostname.replace(os.sep, "_")


def install(app: Celery) -> None:
    """Add the liveness step and its ``--liveness-interval`` option to ``app``'s workers."""
    app.steps["consumer"].add(LivenessFile)
    app.user_options["worker"].add(
        click.Option(
            ["--liveness-interval"],
            type=float,
            default=DEFAULT_INTERVAL,
            show_default=True,
            help="Seconds between two heartbeats of this worker (see workers/liveness.py).",
        )
    )
