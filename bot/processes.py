"""Starting and supervising the bot's processes: the embedded Redis, Celery workers and beat,
and the gunicorn web server.

``gitops-bot serve`` and ``gitops-bot worker`` share this. The supervisor restarts a process that
dies (the OOM killer, a crash) at once, logs it and counts it in Redis (``/metrics`` shows
``gitops_process_restarts_total``); a process that keeps dying (``GITOPS_RESTART_LIMIT`` times
within ``GITOPS_RESTART_WINDOW``) makes the supervisor stop everything and exit non-zero, so the
service manager (systemd, Kubernetes, a Procfile runner) restarts the whole unit rather than
leaving it half alive.

Every child is started by exec (never a bare fork of this process), so no child runs the
supervisor's clean-up code; each is stopped only through its own process handle. Processes
start in layers (Redis, then workers, beat and the web server) and stop in reverse order, so
workers finish their jobs (Celery's warm shutdown) while Redis is still there to hear it.

``DataDirLock`` keeps two bots off one data directory: ``serve`` holds an exclusive lock on it
for its lifetime (its Redis holds it too), and a second ``serve`` waits for it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bot.errors import GitopsError
from bot.settings import Settings

log = logging.getLogger("gitops_bot.processes")

STOP_TIMEOUT = 30.0
"""Seconds a process may take to stop (a worker finishing its job) before it is killed."""


class Supervised(Protocol):
    """A process the supervisor keeps running."""

    name: str

    def start(self) -> Any: ...

    def poll(self) -> int | None: ...

    def terminate(self) -> None:
        """Ask the process to stop; do not wait."""

    def stop(self, timeout: float) -> None:
        """Ask it to stop, wait up to ``timeout`` seconds, then kill it."""


class Command:
    """A child process run from a command line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._pass_fds = pass_fds
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Command:
        self.process = subprocess.Popen(self.argv, env=self._env, pass_fds=self._pass_fds)
        return self

    def poll(self) -> int | None:
        return self.process.poll() if self.process else None

    def terminate(self) -> None:
        """Ask it to stop (Celery's warm shutdown, gunicorn's graceful one)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self, timeout: float) -> None:
        """Terminate, wait up to ``timeout`` seconds, then kill."""
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DataDirBusy(GitopsError):
    """Another bot holds the data directory."""


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/lock``, held until :meth:`release` or the end of
    the process (and of every process its descriptor was passed to)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "lock"
        self._fd: int | None = None

    def acquire(self, timeout: float) -> DataDirLock:
        """Wait up to ``timeout`` seconds for the lock; :class:`DataDirBusy` if it stays held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DataDirBusy(
                    f"another gitops-bot (pid {holder}, or the Redis it started) has been using "
                    f"{self.path.parent} for {timeout:g}s: stop it, or set GITOPS_DATA_DIR to "
                    "another directory"
                )
            if not announced:
                log.warning("waiting up to %gs for another bot to release %s", timeout, self.path)
                announced = True
            time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Supervisor:
    """Starts processes layer by layer, restarts any that dies, stops them in reverse order.

    ``on_restart(name)`` is called after each restart (to count it); an exception it raises is
    logged, never fatal."""

    def __init__(
        self,
        layers: Sequence[Sequence[Supervised]],
        *,
        restart_limit: int,
        restart_window: float,
        on_restart: Callable[[str], None] | None = None,
        interval: float = 0.2,
    ) -> None:
        self.layers = [list(layer) for layer in layers]
        self._restart_limit = restart_limit
        self._restart_window = restart_window
        self._on_restart = on_restart
        self._interval = interval
        self._restarts: dict[str, deque[float]] = {}
        self._stopping = False
        self._started: list[list[Supervised]] = []

    def run(self) -> int:
        """Start every layer in order, then supervise until SIGTERM, SIGINT or SIGHUP (then 0)
        or until a process keeps dying (then 1); everything started is stopped before
        returning. A process that fails to start the first time raises, after the others are
        stopped."""

        def request_stop(signum: int, frame: Any) -> None:
            self._stopping = True

        # SIGHUP too: a closed terminal stops the bot as cleanly as a Ctrl-C.
        stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {sig: signal.signal(sig, request_stop) for sig in stop_signals}
        try:
            for layer in self.layers:
                self._started.append([])
                for child in layer:
                    if self._stopping:
                        return 0
                    child.start()
                    self._started[-1].append(child)
            while not self._stopping:
                for child in (child for layer in self.layers for child in layer):
                    code = child.poll()
                    if code is None or self._stopping:
                        continue
                    if not self._restart(child, code):
                        return 1
                time.sleep(self._interval)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _restart(self, child: Supervised, code: int) -> bool:
        """Start ``child`` again unless it already was ``restart_limit`` times in the window."""
        recent = self._restarts.setdefault(child.name, deque())
        log.warning("%s exited with code %s", child.name, code)
        while True:
            now = time.monotonic()
            while recent and now - recent[0] > self._restart_window:
                recent.popleft()
            if len(recent) >= self._restart_limit:
                log.error(
                    "%s was restarted %d times within %gs and is down again; stopping the bot "
                    "so that its service manager can restart it",
                    child.name,
                    len(recent),
                    self._restart_window,
                )
                return False
            # A process that dies again at once is given a moment more each time.
            time.sleep(min(0.5 * len(recent), 5.0))
            recent.append(now)
            log.warning(
                "restarting %s (restart %d of %d allowed within %gs)",
                child.name,
                len(recent),
                self._restart_limit,
                self._restart_window,
            )
            try:
                child.start()
                break
            except Exception:
                log.exception("could not restart %s", child.name)
        if self._on_restart is not None:
            try:
                self._on_restart(child.name)
            except Exception as exc:
                log.warning("could not count the restart of %s: %s", child.name, exc)
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every started process, the last layer first; within a layer all at once."""
        self._stopping = True
        while self._started:
            layer = self._started.pop()
            for child in layer:
                child.terminate()
            deadline = time.monotonic() + timeout
            for child in layer:
                child.stop(deadline - time.monotonic())


def celery_command(*args: str, settings: Settings | None = None) -> list[str]:
    # JSON logs: no start-up banner, so that every line of output is a JSON object
    quiet = ["--quiet"] if settings is not None and settings.log_format == "json" else []
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", *quiet, *args]


def worker_commands(
    settings: Settings, *, queues: Sequence[str], env: Mapping[str, str] | None = None
) -> list[Command]:
    """One ``celery worker`` per queue, sized by the settings."""
    concurrency = {"deploys": settings.deploy_concurrency, "previews": settings.preview_concurrency}
    return [
        Command(
            f"worker-{queue}",
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
                settings=settings,
            ),
            env=env,
        )
        for queue in queues
    ]


def beat_command(settings: Settings, *, env: Mapping[str, str] | None = None) -> Command:
    """``celery beat`` with its schedule file in the data directory (run exactly one per
    installation: each beat sends every periodic job)."""
    return Command(
        "beat",
        celery_command(
            "beat",
            "--schedule",
            str(settings.data_dir.resolve() / "celerybeat-schedule"),
            "--loglevel",
            settings.log_level,
            settings=settings,
        ),
        env=env,
    )


def web_command(listener_fd: int, *, env: Mapping[str, str] | None = None) -> Command:
    """gunicorn with the shipped configuration, serving on an already bound socket."""
    return Command(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:bot.gunicorn_conf",
            "--bind",
            f"fd://{listener_fd}",
            "bot.app:create_app_from_env()",
        ],
        env=env,
        pass_fds=(listener_fd,),
    )


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
