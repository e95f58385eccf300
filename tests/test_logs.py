"""Logs: one set-up for every process, JSON lines that carry a delivery from the webhook to the
report, and no secret in any line.

The end-to-end test runs ``gitops-bot serve`` (gunicorn, Celery workers, beat, the embedded
Redis) against the fake GitHub at DEBUG level, with one job that succeeds and one that GitHub
refuses, and reads every line the bot printed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.events import PushEvent
from bot.jobs.context import job_log
from bot.logs import REDACTED, Redactor, make_formatter, settings_secrets, setup_logging
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub
from tests.jobs_support import BASE_FILES, REPO, configmap, unreachable_kubeconfig
from tests.test_metrics import samples, value
from tests.test_queue import REPO as QUEUE_REPO
from tests.test_queue import pr_event

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))
TOKEN = "ghp_" + "T0kenThatMustNeverBeLogged" * 2
WEBHOOK_SECRET = "webhook-secret-never-logged"


def capture(log_format: str, secrets: tuple[str, ...] = ()) -> tuple[logging.Logger, io.StringIO]:
    """A logger writing through the bot's formatter to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format, component="worker", secrets=secrets))
    logger = logging.getLogger(f"test.logs.{log_format}.{time.monotonic_ns()}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that sets logging up."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


# --- formats ---------------------------------------------------------------------------------------


def test_a_job_line_in_json_carries_its_delivery_job_repository_pr_and_sha() -> None:
    logger, stream = capture("json")
    event = pr_event("d-1")
    jlog = job_log(event, "job-1")
    jlog.logger = logger
    jlog.info("posted the preview of %s", "abc")
    (line,) = lines(stream)
    assert line["delivery"] == "d-1" and line["job"] == "job-1"
    assert line["repository"] == event.repository.full_name
    assert line["pr"] == event.number and line["sha"] == event.head_sha
    assert line["level"] == "INFO" and line["logger"] == logger.name
    assert line["component"] == "worker" and line["pid"] == os.getpid()
    assert line["message"].endswith("posted the preview of abc")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None  # ISO 8601 with zone


def test_fields_a_line_does_not_have_are_left_out_not_null() -> None:
    logger, stream = capture("json")
    push = PushEvent(
        delivery_id="d-2",
        repository=QUEUE_REPO,
        ref="refs/heads/main",
        after_sha="c" * 40,
        before_sha="d" * 40,
        pusher="bob",
    )
    jlog = job_log(push, "job-2")
    jlog.logger = logger
    jlog.info("deploying")
    logger.warning("no context at all")
    deploy, plain = lines(stream)
    assert "pr" not in deploy and deploy["sha"] == "c" * 40
    assert not set(plain) & {"delivery", "job", "repository", "pr", "sha"}


def test_a_traceback_is_one_json_line_with_its_secrets_redacted() -> None:
    logger, stream = capture("json", secrets=(TOKEN,))
    try:
        raise RuntimeError(f"the server echoed Authorization: token {TOKEN}")
    except RuntimeError:
        logger.exception("request failed")
    text = stream.getvalue()
    assert text.count("\n") == 1 and TOKEN not in text
    (line,) = lines(stream)
    assert "RuntimeError" in line["exc_info"] and REDACTED in line["exc_info"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_are_redacted_wherever_they_appear(log_format: str) -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x2y3z\nq9w8e7r6t5y4\n-----END RSA PRIVATE KEY-----\n"
    logger, stream = capture(log_format, secrets=(TOKEN, key, "short"))
    logger.info("token %s in args", TOKEN)
    logger.info("key %r as repr", key)
    logger.info("key line %s alone", key.splitlines()[1])
    logger.info("an extra", extra={"header": f"Bearer {TOKEN}"})
    logger.info("a short secret is not searched: short")
    text = stream.getvalue()
    assert TOKEN not in text and "MIIEowIBAAKCAQEA1x2y3z" not in text and "q9w8e7r6t5y4" not in text
    assert text.count(REDACTED) >= 4 and "BEGIN RSA PRIVATE KEY" in text
    assert "not searched: short" in text


def test_the_settings_secrets_are_what_gets_redacted(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nKEYFILEBODYLINE\n-----END RSA PRIVATE KEY-----\n"
    )
    settings = Settings.from_env(
        {
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITLAB_TOKEN": "glpat-gitlabtoken",
            "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
            "REDIS_URL": "redis://:redispassword@localhost:6379/0",
        }
    )
    redact = Redactor(settings_secrets(settings))
    text = redact(
        f"{TOKEN} {WEBHOOK_SECRET} glpat-gitlabtoken KEYFILEBODYLINE "
        "redis://:redispassword@localhost:6379/0"
    )
    assert (
        text == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} redis://:{REDACTED}@localhost:6379/0"
    )


def test_setting_up_twice_keeps_one_handler_and_others_handlers(root_logging: None) -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    settings = Settings.from_env({"GITOPS_LOG_FORMAT": "json", "GITOPS_LOG_LEVEL": "WARNING"})
    stream = io.StringIO()
    setup_logging(settings, component="cli", stream=stream)
    setup_logging(settings, component="cli", stream=stream)
    ours = [h for h in root.handlers if h is not foreign]
    assert foreign in root.handlers and len(ours) == len(set(ours) - {foreign})
    logging.getLogger("gitops_bot.test").warning("once")
    logging.getLogger("gitops_bot.test").info("filtered by the level")
    assert [line["message"] for line in lines(stream)] == ["once"]


def test_a_malformed_log_format_is_refused_naming_the_setting() -> None:
    with pytest.raises(Exception, match="GITOPS_LOG_FORMAT is malformed"):
        Settings.from_env({"GITOPS_LOG_FORMAT": "xml"})


# --- end to end ------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], object], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line the bot printed, each a JSON object (a line that is not fails the test)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                found.append(json.loads(line))
            except ValueError:
                pytest.fail(f"line {number} is not JSON: {line!r}")
    return found


@pytest.mark.slow
def test_serve_logs_json_from_the_webhook_to_the_report_and_never_a_secret(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    gh = fake_github
    gh.create_repo(REPO, files=BASE_FILES)
    gh.set_permission(REPO, "gitops-bot", "write")
    token = gh.bot_token or ""
    for branch, value_ in (("one", "2"), ("two", "3")):
        gh.commit(REPO, branch, {"web/a.yaml": configmap("a", value_)})
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        f"targets:\n  default:\n    kubeconfig: {unreachable_kubeconfig(tmp_path / 'kc')}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        GITOPS_LOG_FORMAT="json",
        GITOPS_LOG_LEVEL="DEBUG",
        GITOPS_DATA_DIR=str(tmp_path / "data"),
        GITOPS_WORKER_HEARTBEAT="0.5",
        GITOPS_FORGE_WRITE_INTERVAL="0",
        GITOPS_CLUSTERS_FILE=str(clusters),
        GITHUB_API_URL=gh.url,
        GITHUB_TOKEN=token,
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    log, out = tmp_path / "serve.log", tmp_path / "serve.out"
    with log.open("wb") as err_file, out.open("wb") as out_file:
        serve = subprocess.Popen(
            [GITOPS_BOT, "serve", "--port", "0"],
            env=env,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
    try:
        url = ""

        def listening() -> bool:
            nonlocal url
            assert serve.poll() is None, log.read_text()[-3000:]
            for line in read_lines(log):
                if line["message"].startswith("gitops-bot listening on "):
                    url = line["message"].rsplit(" ", 1)[1]
            return bool(url)

        def ready() -> bool:
            try:
                return requests.get(f"{url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(listening, "serve listening")
        wait_until(ready, "serve ready")
        gh.add_webhook(f"{url}/webhooks/github", secret=WEBHOOK_SECRET)
        # a secondary rate limit: PyGithub waits, retries and logs it (through the bot's logging)
        gh.fail(403, times=1, retry_after=1, path=f"/repos/{REPO}/pulls/1")
        gh.open_pull_request(REPO, head="one")
        wait_until(lambda: gh.comments(REPO, 1), "the preview comment on PR 1")
        # GitHub refuses the token while the second preview runs: the job fails, with a token
        gh.fail(401, times=1, path=f"/repos/{REPO}/pulls/2")
        gh.open_pull_request(REPO, head="two")

        def ended(outcome: str) -> bool:
            return any(
                line.get("pr") == 2 and line["message"].endswith(f"preview job ended: {outcome}")
                for line in read_lines(log)
            )

        wait_until(lambda: ended("failed"), "the failed preview of PR 2")
        found = samples(requests.get(f"{url}/metrics", timeout=5).text)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)

    text = log.read_text()
    for secret in (token, WEBHOOK_SECRET):
        assert secret not in text
    everything = read_lines(log)  # every log line of every process is JSON, on stderr
    # stdout: only what Celery prints from its signal handlers, where logging is unsafe
    for line in filter(None, out.read_text().splitlines()):
        assert re.fullmatch(r"worker: (Warm|Cold) shutdown \(MainProcess\)", line), line

    head = gh.repo(REPO).pulls[1].head_sha
    (queued,) = [
        line
        for line in everything
        if line["logger"] == "gitops_bot.web" and line.get("pr") == 1
        and line["message"].startswith("queued preview job")
    ]  # fmt: skip
    (posted,) = [
        line
        for line in everything
        if line["logger"] == "gitops_bot.jobs" and "posted the preview" in line["message"]
    ]
    for field in ("delivery", "job", "repository", "pr", "sha"):
        assert posted[field] == queued[field], field
    assert (queued["repository"], queued["pr"], queued["sha"]) == (REPO, 1, head)
    assert queued["component"] == "web" and posted["component"] == "worker"
    job_lines = [line for line in everything if line.get("job") == queued["job"]]
    assert {line["logger"] for line in job_lines} >= {"gitops_bot.web", "gitops_bot.jobs"}
    failed = [line for line in everything if line.get("pr") == 2 and line["level"] == "ERROR"]
    assert failed and "refused GITHUB_TOKEN (401" in failed[0]["message"]

    loggers = {(line["component"], line["logger"].split(".")[0]) for line in everything}
    # Celery's and gunicorn's own lines, and the supervisor's, go through the same set-up
    assert {("worker", "celery"), ("web", "gunicorn"), ("serve", "gitops_bot")} <= loggers
    assert any(c == "beat" for c, _ in loggers)

    # one /metrics for the one machine: intake, queue and the workers' job metrics
    run = "gitops_job_run_seconds_count"
    assert value(found, run, job="preview", outcome="posted") == 1
    assert value(found, run, job="preview", outcome="failed") == 1
    assert value(found, "gitops_forge_requests_total", provider="github", status="401") == 1
    assert value(found, "gitops_forge_requests_total", provider="github", status="403") == 1
    # PyGithub's and Celery's own lines during a job carry the job's identity too
    retried = [line for line in everything if line["logger"] == "github.GithubRetry"]
    assert retried and {line.get("delivery") for line in retried} == {queued["delivery"]}
    assert any(
        line["logger"] == "celery.app.trace" and line.get("job") == queued["job"]
        for line in everything
    )
    assert (
        value(found, "gitops_webhooks_received_total", provider="github", event="pull_request") == 2
    )
    assert value(found, "gitops_jobs_processed_total", job="preview", outcome="posted") == 1
