"""``gitops-bot pause`` / ``resume`` / ``pauses`` (issue 15.7) and what ``/metrics`` shows about
deploys: real Redis, the real command line (click's runner, and one subprocess finding the
embedded Redis of ``gitops-bot serve`` by itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
from click.testing import CliRunner

from bot.cli import main
from bot.embedded_redis import EmbeddedRedis
from bot.state import PARKED_KEY, pause, pause_of, pauses
from tests.test_app import make_client

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))


def run(redis_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"REDIS_URL": redis_url})
    return result.exit_code, result.output


def test_pause_then_resume_one_app_queues_the_resume_job(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    code, out = run(redis_url, "pause", "--repo", "Acme/App", "--app", "web", "--reason", "freeze")
    assert code == 0, out
    assert out.strip() == (
        "paused app web of Acme/App: freeze; `gitops-bot resume --repo Acme/App --app web` "
        "lets the deploys go on"
    )
    found = pause_of(client, "acme/app", "web")
    assert found is not None and found.reason == "freeze" and found.by
    assert pause_of(client, "acme/app", "api") is None
    assert pause_of(client, "acme/other", "web") is None
    code, out = run(redis_url, "pauses")
    assert code == 0 and out.startswith("app web of acme/app — paused by ")
    assert out.rstrip().endswith(": freeze")
    code, out = run(redis_url, "resume", "--repo", "acme/app", "--app", "web")
    assert code == 0, out
    assert out.strip() == "resumed app web of acme/app; paused deploys go on in push order"
    assert pauses(client) == []
    # the job that goes on with paused deploys waits on the deploy workers' queue
    (message,) = client.lrange("deploys", 0, -1)
    assert json.loads(message)["headers"]["task"] == "gitops.deploy_resume"


def test_the_narrowest_pause_holds_and_resume_names_what_stays_paused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pause(client, repository=None, app=None, reason="everything", by="ops")
    pause(client, repository="acme/app", app=None, reason="repo", by="ops")
    found = pause_of(client, "acme/app", "web")
    assert found is not None and found.reason == "repo"
    assert found.scope == "every app of acme/app"
    other = pause_of(client, "acme/other", "web")
    assert other is not None and other.scope == "every deploy"
    code, out = run(redis_url, "resume", "--app", "web")
    assert code == 1
    assert "nothing was paused for app web in every repository" in out
    assert "(still paused: every deploy; every app of acme/app)" in out
    code, out = run(redis_url, "resume")
    assert code == 0 and "(still paused: every app of acme/app)" in out


def test_without_redis_url_the_commands_say_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [GITOPS_BOT, "pause"],
        env={**env, "GITOPS_DATA_DIR": str(tmp_path / "nothing")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "REDIS_URL is not set and no embedded Redis is running in" in result.stderr


def test_beside_serve_the_commands_find_its_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    with EmbeddedRedis(tmp_path / "data") as server:
        result = subprocess.run(
            [GITOPS_BOT, "pause", "--reason", "maintenance"],
            env={**env, "GITOPS_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        found = pause_of(redis.Redis.from_url(server.url), "any/repo", "any-app")
        assert found is not None and found.reason == "maintenance"


def test_metrics_show_pauses_and_the_deploys_waiting_for_resume(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pause(client, repository="acme/app", app="web", reason="a reason", by="ops")
    client.zadd(PARKED_KEY, {"gitops:deploy:github:acme/app:run:abc": 1})
    text = make_client(redis_url).get("/metrics").get_data(as_text=True)
    assert 'gitops_deploys_paused{app="web",repository="acme/app"} 1.0' in text
    assert "gitops_deploys_waiting_for_resume 1.0" in text
