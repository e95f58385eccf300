"""``gitops-bot serve``, ``worker`` and ``beat``: running the bot.

``serve`` is the newcomer's one command: with no ``REDIS_URL`` it starts an embedded Redis
(data in ``GITOPS_DATA_DIR``), the Celery workers and beat beside the web server, and keeps them
running (``bot.processes``). With ``REDIS_URL`` set, run ``serve`` (or gunicorn) for the web and
``worker`` and ``beat`` separately: the production shape.

Order of start-up: the data directory's lock (waiting ``GITOPS_LOCK_TIMEOUT`` for a bot that is
stopping), the listening socket (a busy port ends here, with nothing started), then the
processes; gunicorn serves on the socket ``serve`` bound.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import click

from bot.cli import cli_settings, main
from bot.forges import startup_warnings
from bot.logs import announce, setup_logging
from bot.processes import (
    STOP_TIMEOUT,
    Command,
    DataDirBusy,
    DataDirLock,
    Supervised,
    Supervisor,
    beat_command,
    prometheus_dir,
    web_command,
    worker_commands,
    worker_stop_timeout,
)
from bot.settings import Settings

log = logging.getLogger("gitops_bot.cli")

PORT_IN_USE = (
    "cannot listen on {host}:{port}: the port is in use (another gitops-bot?); stop what "
    "listens there, or choose another --port"
)


def _setup_logging(settings: Settings, component: str = "serve") -> None:
    setup_logging(settings, component=component)
    # Once per command, not per gunicorn or Celery child: a webhook secret without credentials.
    for warning in startup_warnings(settings):
        log.warning(warning)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a ClickException saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(PORT_IN_USE.format(host=host, port=port)) from exc
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _restart_counter(redis_url: str, timeout: float) -> Callable[[str], None]:
    """Counts restarts in Redis, where /metrics reads them."""
    # redis and celery load here, not at import: `gitops-bot --help` stays fast
    from bot.queue import count_restart, redis_client

    client = redis_client(redis_url, timeout=timeout)
    return lambda name: count_restart(client, name)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--workers/--no-workers",
    default=None,
    help="Run the Celery workers and beat in this command too (default: only with the "
    "embedded Redis).",
)
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="The bot's public URL (https://gitops-bot.example.com), where forges send webhooks; "
    "sets GITOPS_PUBLIC_URL (/setup/github-app gives it to the App it creates).",
)
def serve(host: str, port: int, workers: bool | None, url: str | None) -> None:
    """Run the webhook server (and, without REDIS_URL, an embedded Redis, the workers and beat).

    Every process is supervised: one that dies is restarted; one that keeps dying stops the
    bot with exit code 1. Start-up errors (a busy port, a data directory another bot holds)
    exit with code 1 before anything is started. Without a webhook secret and without a GitHub
    App it serves /setup/github-app only, to create the App in one click."""
    if url is not None:
        os.environ["GITOPS_PUBLIC_URL"] = url  # for this command and the processes it starts
    settings = cli_settings()
    if settings.github_app_id is not None:
        settings = cli_settings(require_webhook_secret=True)
    _setup_logging(settings, "serve")
    if not (settings.github_webhook_secret or settings.gitlab_webhook_secret):
        log.warning(
            "no webhook secret is set: deliveries are refused; open /setup/github-app on this "
            "bot to create a GitHub App in one click (the link with its key goes to this log)"
        )
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire(settings.lock_timeout)
    except DataDirBusy as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        with _listen(host, port) as listener:
            code = _serve(settings, listener, lock=lock, host=host, workers=workers)
    finally:
        lock.release()
    sys.exit(code)


def _serve(
    settings: Settings,
    listener: socket.socket,
    *,
    lock: DataDirLock,
    host: str,
    workers: bool | None,
) -> int:
    from bot.embedded_redis import EmbeddedRedis, EmbeddedRedisError
    from bot.queue import QUEUES

    env = dict(os.environ)
    layers: list[list[Supervised]] = []
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir, pass_fds=(lock.fileno(),))
        settings = settings.with_redis_url(embedded.url)
        env["REDIS_URL"] = embedded.url
        layers.append([embedded])
        announce(log, "embedded Redis, data in %s", embedded.data_dir)
    assert settings.redis_url
    if workers is None:
        workers = bool(layers)
    # The web's /metrics adds up what every process wrote here, the workers' job metrics
    # included: on one machine one endpoint shows everything (GITOPS_WORKER_METRICS_PORT is
    # for `gitops-bot worker` alone).
    env["PROMETHEUS_MULTIPROC_DIR"] = prometheus_dir(settings.data_dir / "metrics" / "serve")
    processes: list[Supervised] = []
    if workers:
        processes += worker_commands(settings, queues=QUEUES, env=env)
        processes.append(beat_command(settings, env=env))
    processes.append(web_command(listener.fileno(), env=env))
    layers.append(processes)
    port = listener.getsockname()[1]
    announce(log, "gitops-bot listening on http://%s:%s", host, port)
    supervisor = Supervisor(
        layers,
        restart_limit=settings.restart_limit,
        restart_window=settings.restart_window,
        on_restart=_restart_counter(settings.redis_url, settings.redis_timeout),
        stop_timeout=worker_stop_timeout(settings) if workers else STOP_TIMEOUT,
    )
    try:
        return supervisor.run()
    except EmbeddedRedisError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option(
    "--queues",
    default=None,
    help="Comma-separated queues; each gets its own Celery worker process. [default: every queue]",
)
def worker(queues: str | None) -> None:
    """Run the Celery workers (needs REDIS_URL); a worker that dies is restarted."""
    from bot.queue import QUEUES

    settings = cli_settings(require_webhook_secret=False)
    if not settings.redis_url:
        raise click.ClickException(
            "REDIS_URL is not set: `gitops-bot worker` needs the Redis the web process queues "
            "to (or run `gitops-bot serve` alone, which embeds both)"
        )
    chosen = [q.strip() for q in (queues or ",".join(QUEUES)).split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown queue(s) {unknown}; choose from {list(QUEUES)}")
    _setup_logging(settings, "worker")
    env: dict[str, str] | None = None
    server = None
    if settings.worker_metrics_port:
        # Celery's pool processes write their metrics to files in this directory; this
        # process, which outlives every Celery process it restarts, serves their sum.
        env = dict(os.environ)
        env["PROMETHEUS_MULTIPROC_DIR"] = prometheus_dir(
            settings.data_dir / "metrics" / f"worker-{settings.worker_metrics_port}"
        )
        server = _serve_metrics(settings.worker_metrics_port, env["PROMETHEUS_MULTIPROC_DIR"])
    supervisor = Supervisor(
        [worker_commands(settings, queues=chosen, env=env)],
        restart_limit=settings.restart_limit,
        restart_window=settings.restart_window,
        on_restart=_restart_counter(settings.redis_url, settings.redis_timeout),
        stop_timeout=worker_stop_timeout(settings),
    )
    try:
        code = supervisor.run()
    finally:
        if server is not None:
            server.shutdown()
    sys.exit(code)


def _serve_metrics(port: int, path: str) -> Any:
    """The worker's /metrics on every address, or a ClickException saying why not (a busy
    port stops the command before any worker starts)."""
    from bot.metrics import serve_worker_metrics

    try:
        server = serve_worker_metrics(port, path)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"cannot serve the worker's metrics on port {port}: the port is in use "
                "(another gitops-bot worker?); set GITOPS_WORKER_METRICS_PORT to another port, "
                "or 0 for none"
            ) from exc
        raise click.ClickException(
            f"cannot serve the worker's metrics on port {port}: {exc.strerror}"
        ) from exc
    announce(log, "worker metrics on http://0.0.0.0:%d/metrics", port)
    return server


@main.command()
def beat() -> None:
    """Run the Celery beat scheduler (periodic jobs; needs REDIS_URL). Run exactly one per
    installation."""
    settings = cli_settings(require_webhook_secret=False)
    if not settings.redis_url:
        raise click.ClickException(
            "REDIS_URL is not set: `gitops-bot beat` needs the queue's Redis"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command: Command = beat_command(settings)
    os.execv(command.argv[0], command.argv)
