"""``gitops-bot serve``, ``worker`` and ``beat``: running the bot.

``serve`` is the newcomer's one command: with no ``REDIS_URL`` it starts an embedded Redis
(data in ``GITOPS_DATA_DIR``) and the Celery workers beside the web server. With ``REDIS_URL``
set, run ``serve`` (or gunicorn) for the web and ``worker`` separately: the production shape.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from bot.cli import cli_settings, main
from bot.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from bot.forges import startup_warnings
from bot.processes import Supervisor, celery_command, prometheus_dir, run_gunicorn, worker_commands
from bot.queue import QUEUES
from bot.settings import Settings

log = logging.getLogger("gitops_bot.cli")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Once per command, not per gunicorn or Celery child: a webhook secret without credentials.
    for warning in startup_warnings(settings):
        log.warning(warning)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers/--no-workers",
    default=None,
    help="Run the Celery workers in this command too (default: only with the embedded Redis).",
)
def serve(host: str, port: int, workers: bool | None) -> None:
    """Run the webhook server (and, without REDIS_URL, an embedded Redis and the workers)."""
    settings = cli_settings(require_webhook_secret=True)
    _setup_logging(settings)
    embedded: EmbeddedRedis | None = None
    supervisor: Supervisor | None = None
    try:
        if not settings.redis_url:
            try:
                embedded = EmbeddedRedis(settings.data_dir).start()
            except EmbeddedRedisError as exc:
                raise click.ClickException(str(exc)) from exc
            settings = settings.with_redis_url(embedded.url)
            os.environ["REDIS_URL"] = embedded.url  # for the worker processes
            click.echo(f"embedded Redis running, data in {embedded.data_dir}", err=True)
        if workers is None:
            workers = embedded is not None
        prometheus_dir(settings.data_dir / "metrics")
        if workers:
            supervisor = Supervisor(worker_commands(settings, queues=QUEUES)).start()
        click.echo(f"gitops-bot listening on http://{host}:{port}", err=True)
        run_gunicorn(settings, host=host, port=port)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if embedded is not None:
            embedded.stop()


@main.command()
@click.option(
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues; each gets its own Celery worker process.",
)
def worker(queues: str) -> None:
    """Run the Celery workers (needs REDIS_URL)."""
    settings = cli_settings(require_webhook_secret=False)
    if not settings.redis_url:
        raise click.ClickException(
            "REDIS_URL is not set: `gitops-bot worker` needs the Redis the web process queues "
            "to (or run `gitops-bot serve` alone, which embeds both)"
        )
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown queue(s) {unknown}; choose from {list(QUEUES)}")
    _setup_logging(settings)
    sys.exit(Supervisor(worker_commands(settings, queues=chosen)).start().wait())


@main.command()
def beat() -> None:
    """Run the Celery beat scheduler (periodic jobs; needs REDIS_URL)."""
    settings = cli_settings(require_webhook_secret=False)
    if not settings.redis_url:
        raise click.ClickException(
            "REDIS_URL is not set: `gitops-bot beat` needs the queue's Redis"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    os.execv(
        sys.executable,
        celery_command("beat", "--schedule", str(schedule), "--loglevel", settings.log_level),
    )
