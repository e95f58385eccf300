"""Starting and supervising the bot's processes: Celery workers and the gunicorn web server.

``gitops-bot worker`` and ``gitops-bot serve`` share this. Deploys get their own Celery worker
process (queue ``deploys``) so they never wait behind previews; when any child dies the
supervisor stops the others and exits non-zero, so the platform (systemd, Kubernetes, a
Procfile runner) restarts the whole unit rather than leaving it half alive.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.settings import Settings

log = logging.getLogger("gitops_bot.processes")

STOP_TIMEOUT = 30.0


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", *args]


def worker_commands(settings: Settings, *, queues: Sequence[str]) -> list[list[str]]:
    """One ``celery worker`` per queue, sized by the settings."""
    concurrency = {"deploys": settings.deploy_concurrency, "previews": settings.preview_concurrency}
    commands = []
    for queue in queues:
        commands.append(
            celery_command(
                "worker",
                "--queues",
                queue,
                "--concurrency",
                str(concurrency[queue]),
                "--hostname",
                f"{queue}@%h",
                "--loglevel",
                settings.log_level,
                "--without-gossip",
                "--without-mingle",
            )
        )
    return commands


class Supervisor:
    """Runs child processes; stops them all when one exits or when told to."""

    def __init__(
        self, commands: Sequence[Sequence[str]], *, env: dict[str, str] | None = None
    ) -> None:
        self._commands = [list(c) for c in commands]
        self._env = env
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> Supervisor:
        for command in self._commands:
            self.children.append(subprocess.Popen(command, env=self._env))
        return self

    def poll(self) -> int | None:
        """The exit code of the first child that ended, or None while all run."""
        for child in self.children:
            code = child.poll()
            if code is not None:
                return code
        return None

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the job
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def wait(self) -> int:
        """Block until a child exits or SIGTERM/SIGINT arrives; then stop all; exit code."""
        stopping = False

        def _stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stopping:
                code = self.poll()
                if code is not None:
                    log.error("a worker process exited with code %s; stopping the others", code)
                    return code or 1
                time.sleep(0.5)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def prometheus_dir(default: Path) -> str:
    """Set up prometheus-client's multiprocess directory before any web worker imports it.

    Without ``PROMETHEUS_MULTIPROC_DIR`` it is ``default``, emptied first: files left by a
    previous run's processes would otherwise be added to this run's counters."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        shutil.rmtree(default, ignore_errors=True)
        path = str(default)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path


def run_gunicorn(settings: Settings, *, host: str, port: int) -> None:
    """Serve the Flask app under gunicorn in this process until SIGTERM/SIGINT."""
    prometheus_dir(settings.data_dir / "metrics")
    from gunicorn.app.base import BaseApplication

    from bot import gunicorn_conf
    from bot.app import create_app

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key in (
                "worker_class",
                "timeout",
                "graceful_timeout",
                "keepalive",
                "child_exit",
            ):
                self.cfg.set(key, getattr(gunicorn_conf, key))
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", settings.web_workers)
            self.cfg.set("threads", settings.web_threads)
            self.cfg.set("accesslog", None)

        def load(self) -> Any:
            return create_app(settings)

    _App().run()
