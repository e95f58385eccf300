"""Real Celery workers (``gitops-bot worker``) consume what the web process queued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.signals import before_task_publish

from bot.events import PushEvent
from bot.queue import JOB_KEY, TASK_NAMES, JobQueue, kombu_url, redis_client
from bot.settings import Settings
from tests.test_queue import REPO, pr_event
from workers.celery_app import celery_config
from workers.tasks import UNREADABLE_KEY

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))


def wait_for_state(client: redis.Redis, job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.hget(JOB_KEY.format(job_id=job_id), "state") == state.encode():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"job {job_id} never reached {state}: {client.hgetall(JOB_KEY.format(job_id=job_id))}"
    )


def celery_worker(redis_url: str, log: Path, *, queue: str = "previews") -> subprocess.Popen[bytes]:
    """A real Celery worker on the bot's app, with the test tasks and signal receivers loaded."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker",
            "--queues", queue, "--concurrency", "1", "--include", "tests.worker_tasks",
            "--without-gossip", "--without-mingle",
        ],
        env=dict(os.environ, REDIS_URL=redis_url, GITOPS_WORKER_HEARTBEAT="0.5"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[1],
    )  # fmt: skip


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        # the forge of the queued events, without credentials (a webhook secret alone)
        env = dict(
            os.environ,
            REDIS_URL=redis_url,
            GITOPS_DATA_DIR=str(tmp_path),
            GITHUB_API_URL=REPO.api_url,
            GITHUB_WEBHOOK_SECRET="s3cret",
        )
        env.pop("GITHUB_TOKEN", None)
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([GITOPS_BOT, "worker"], env=env, stdout=log, stderr=log)
        processes.append(proc)
        return proc

    yield start
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_jobs_queued_before_a_worker_runs_are_processed_when_it_starts(
    redis_url: str, start_worker: object, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
    preview = queue.enqueue(pr_event("w-1"), provider="github")
    deploy = queue.enqueue(
        PushEvent(
            delivery_id="w-2",
            repository=REPO,
            ref="refs/heads/main",
            after_sha="c" * 40,
            before_sha="d" * 40,
            pusher="bob",
        ),
        provider="github",
    )
    assert client.hget(JOB_KEY.format(job_id=preview.job_id), "state") == b"queued"
    # a job queued by another version of the bot, with a field this one does not know
    future = pr_event("w-3").to_task() | {"merge_queue": True}
    sender = Celery("test-sender", broker=kombu_url(redis_url), set_as_current=False)
    sender.send_task(TASK_NAMES["preview"], args=(future,), task_id="w-3-job", queue="previews")
    start_worker()  # type: ignore[operator]
    # a webhook secret without credentials: each GitHub job ends with that error, counted
    wait_for_state(client, preview.job_id, "not_configured")
    wait_for_state(client, deploy.job_id, "not_configured")
    # kept for the operator, said once, never handed to Celery to drop
    wait_for_state(client, "w-3-job", "unreadable")
    (kept,) = [json.loads(raw) for raw in client.lrange(UNREADABLE_KEY, 0, -1)]
    assert kept["task"] == TASK_NAMES["preview"] and kept["args"] == [future]
    assert "unexpected keyword argument 'merge_queue'" in kept["error"]
    counts = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).stats().processed
    assert counts == {
        ("preview", "not_configured"): 1,
        ("deploy", "not_configured"): 1,
        ("preview", "unreadable"): 1,
    }
    log = (tmp_path / "worker-0.log").read_text()
    assert "[delivery w-1 job" in log and "has no GitHub credentials" in log
    assert "[job w-3-job] preview job unreadable by this version of gitops-bot" in log
    assert "Traceback" not in log
    assert client.llen("previews") == 0 and client.llen("deploys") == 0


def test_celery_is_set_for_at_least_once_delivery() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://localhost/0", "GITOPS_JOB_TIMEOUT": "600"})
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] > config["task_time_limit"]
    routes = config["task_routes"]
    assert routes["gitops.deploy"]["queue"] == "deploys"
    assert routes["gitops.preview"]["queue"] == routes["gitops.command"]["queue"] == "previews"


def test_worker_without_redis_url_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [GITOPS_BOT, "worker"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr


@pytest.mark.slow
def test_a_job_whose_worker_process_is_killed_runs_again(redis_url: str, tmp_path: Path) -> None:
    """acks_late + reject_on_worker_lost: a job is acknowledged only when it finished, so when
    the process running it dies (OOM kill, SIGKILL) the job goes back on the queue and runs
    again; nothing is lost. (A whole worker host lost mid-job is covered by the visibility
    timeout: its unacknowledged job is handed out again after GITOPS_JOB_TIMEOUT x 2 + 300 s.)"""
    worker = celery_worker(redis_url, tmp_path / "worker.log")
    client = redis.Redis.from_url(redis_url)
    sender = Celery("test-sender", broker=kombu_url(redis_url), set_as_current=False)
    sender.send_task("gitops.test.slow", args=("k", 60), queue="previews")
    try:
        deadline = time.monotonic() + 60
        while client.get("k:pid:1") is None:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        os.kill(int(client.get("k:pid:1") or 0), signal.SIGKILL)
        while client.get("k:done") is None:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        assert client.get("k:done") == b"2"  # the second attempt finished the job
        assert client.llen("previews") == 0
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.slow
def test_a_header_set_by_a_publish_receiver_reaches_the_task(
    redis_url: str, tmp_path: Path
) -> None:
    """Tracing integrations (OpenTelemetry's) put their context in the message's headers in
    ``before_task_publish`` and read it back in the worker: the bot's intake sends that signal
    as Celery's send_task does, so the header arrives with the job."""

    def add_trace(headers: dict[str, object], **_: object) -> None:
        headers["x-test-trace"] = "trace-42"

    before_task_publish.connect(add_trace)
    try:
        queued = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).enqueue(
            pr_event("traced"), provider="github"
        )
    finally:
        before_task_publish.disconnect(add_trace)
    worker = celery_worker(redis_url, tmp_path / "worker.log")
    client = redis.Redis.from_url(redis_url)
    try:
        # the job itself fails (the event names a forge this bot does not serve); the header
        # reached the task before that
        wait_for_state(client, queued.job_id, "failed")
        assert client.get(f"trace:{queued.job_id}") == b"trace-42"
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.slow
def test_a_worker_announces_its_queues_while_it_consumes_them(
    redis_url: str, tmp_path: Path
) -> None:
    """/readyz knows a queue has a worker by its heartbeat: there while the worker runs, gone at
    once after a warm shutdown, expired a few intervals after a SIGKILL."""
    queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
    assert queue.workers() == {"deploys": 0, "previews": 0}
    worker = celery_worker(redis_url, tmp_path / "worker.log", queue="deploys")
    try:
        deadline = time.monotonic() + 60
        while queue.workers()["deploys"] != 1:
            assert worker.poll() is None and time.monotonic() < deadline, (
                tmp_path / "worker.log"
            ).read_text()
            time.sleep(0.1)
        assert queue.workers()["previews"] == 0
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert queue.workers() == {"deploys": 0, "previews": 0}  # withdrawn by the warm shutdown

    worker = celery_worker(redis_url, tmp_path / "worker-2.log", queue="deploys")
    try:
        deadline = time.monotonic() + 60
        while queue.workers()["deploys"] != 1:
            assert time.monotonic() < deadline, (tmp_path / "worker-2.log").read_text()
            time.sleep(0.1)
        worker.kill()
        worker.wait(timeout=30)
        deadline = time.monotonic() + 10
        while queue.workers()["deploys"] != 0:  # three missed heartbeats: 1.5 s
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()


def test_beat_schedules_drift_and_catch_up_each_off_at_zero() -> None:
    from workers.schedule import beat_schedule

    settings = Settings.from_env({"GITOPS_DRIFT_INTERVAL": "30", "GITOPS_RECONCILE_INTERVAL": "5"})
    schedule = beat_schedule(settings)
    assert schedule == {
        "drift": {
            "task": "gitops.drift_all",
            "schedule": 30.0,
            "options": {"queue": "deploys", "expires": 30.0},
        },
        "catchup": {
            "task": "gitops.catchup",
            "schedule": 5.0,
            "options": {"queue": "deploys", "expires": 5.0},
        },
    }
    assert celery_config(Settings.from_env({"REDIS_URL": "redis://localhost/0"}))[
        "beat_schedule"
    ].keys() == {"drift", "catchup"}  # on by default: 600 s and 180 s
    off = Settings.from_env({"GITOPS_DRIFT_INTERVAL": "0", "GITOPS_RECONCILE_INTERVAL": "0"})
    assert beat_schedule(off) == {}
