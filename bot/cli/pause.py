"""``gitops-bot pause``, ``resume`` and ``pauses``: freeze deploys, and let them go on.

The first thing an operator needs at 3 a.m.: ``gitops-bot pause --repo acme/app --reason
"incident 42"`` stops deploys of every app of acme/app (``--app web`` of one app, in every
repository without ``--repo``; neither: every deploy) until ``gitops-bot resume`` with the
same options. While paused, merges are planned as usual but their paused apps are not applied:
the commit status and the deploy comment say ``paused`` with the reason. On resume, the paused
deploys go on in push order (an older one is superseded by a newer one for the same app).
A deploy already applying when the pause is set finishes.

State lives in the bot's Redis (:mod:`bot.state`: ``gitops:pauses``), so these commands need
``REDIS_URL`` — or, beside ``gitops-bot serve`` with its embedded Redis, the same
``GITOPS_DATA_DIR``: the embedded Redis listens on ``<GITOPS_DATA_DIR>/redis.sock``, which the
commands find by themselves. ``/metrics`` shows the pauses (``gitops_deploys_paused``).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli import cli_settings, main

if TYPE_CHECKING:
    import redis

    from bot.settings import Settings

MSG_NO_REDIS = (
    "REDIS_URL is not set and no embedded Redis is running in {data_dir} (no {socket}): set "
    "REDIS_URL to the bot's Redis, or GITOPS_DATA_DIR to the directory `gitops-bot serve` uses"
)
MSG_NOT_PAUSED = "nothing was paused for {scope}{others}"
MSG_PAUSED = "paused {scope}{reason}; `gitops-bot resume{options}` lets the deploys go on"
MSG_RESUMED = "resumed {scope}; paused deploys go on in push order"
MSG_STILL = " (still paused: {scopes})"
MSG_NONE = "no deploy is paused"


def _embedded_socket(settings: Settings) -> Path:
    # where bot.embedded_redis.EmbeddedRedis listens in the data directory
    return Path(settings.data_dir).expanduser().resolve() / "redis.sock"


def redis_url_for(settings: Settings) -> str:
    """``REDIS_URL``, else the embedded Redis of ``gitops-bot serve`` in GITOPS_DATA_DIR."""
    if settings.redis_url:
        return settings.redis_url
    socket = _embedded_socket(settings)
    if socket.exists():
        return f"unix://{socket}"
    raise click.ClickException(MSG_NO_REDIS.format(data_dir=settings.data_dir, socket=socket))


def _client(settings: Settings) -> redis.Redis:
    from bot.queue import redis_client

    return redis_client(redis_url_for(settings), timeout=max(settings.redis_timeout, 5.0))


def _scope(repo: str | None, app: str | None) -> str:
    from bot.state import ANY, Pause

    return Pause(repository=repo or ANY, app=app or ANY, reason="", by="", at=0).scope


def _options(repo: str | None, app: str | None) -> str:
    return (f" --repo {repo}" if repo else "") + (f" --app {app}" if app else "")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


@main.command("pause")
@click.option("--repo", default=None, help="Only this repository (owner/name). Default: all.")
@click.option("--app", default=None, help="Only this app (by its name in .gitops.yaml).")
@click.option("--reason", default="", help="Said on the commit status and the deploy comment.")
@click.option("--by", default=None, help="Who pauses (default: the current user).")
def pause_command(repo: str | None, app: str | None, reason: str, by: str | None) -> None:
    """Pause deploys (of one repository, one app, or every one) until `gitops-bot resume`."""
    import redis as redis_lib

    from bot.state import pause

    settings = cli_settings()
    try:
        pause(_client(settings), repository=repo, app=app, reason=reason, by=by or _who())
    except redis_lib.RedisError as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from exc
    said = f": {reason}" if reason else ""
    click.echo(MSG_PAUSED.format(scope=_scope(repo, app), reason=said, options=_options(repo, app)))


@main.command("resume")
@click.option("--repo", default=None, help="The repository given to `pause` (owner/name).")
@click.option("--app", default=None, help="The app given to `pause`.")
def resume_command(repo: str | None, app: str | None) -> None:
    """Lift the pause set with the same options, and let the paused deploys go on."""
    import redis as redis_lib

    from bot.state import pauses, resume

    settings = cli_settings()
    client = _client(settings)
    try:
        lifted = resume(client, repository=repo, app=app)
        left = pauses(client)
    except redis_lib.RedisError as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from exc
    others = MSG_STILL.format(scopes="; ".join(p.scope for p in left)) if left else ""
    if not lifted:
        raise click.ClickException(MSG_NOT_PAUSED.format(scope=_scope(repo, app), others=others))
    _queue_resume(settings)
    click.echo(MSG_RESUMED.format(scope=_scope(repo, app)) + others)


def _queue_resume(settings: Settings) -> None:
    """Queue the job that goes on with the paused deploys (on the deploy workers)."""
    from celery import Celery

    from bot.queue import QUEUE_OF, TASK_NAMES, kombu_url

    sender = Celery("gitops-bot-cli", broker=kombu_url(redis_url_for(settings)))
    sender.conf.broker_connection_retry_on_startup = False
    try:
        sender.send_task(TASK_NAMES["deploy_resume"], queue=QUEUE_OF["deploy_resume"])
    finally:
        sender.close()


@main.command("pauses")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text")
def pauses_command(fmt: str) -> None:
    """List what is paused, by whom, since when and why."""
    import redis as redis_lib

    from bot.state import pauses

    settings = cli_settings()
    try:
        found = pauses(_client(settings))
    except redis_lib.RedisError as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from exc
    if fmt == "json":
        rows = [
            {"repository": p.repository, "app": p.app, "reason": p.reason, "by": p.by, "at": p.at}
            for p in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo(MSG_NONE)
        return
    for p in found:
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(p.at))
        reason = f": {p.reason}" if p.reason else ""
        click.echo(f"{p.scope} — paused by {p.by} since {since}{reason}")
    sys.stdout.flush()
