"""Real Celery workers (``gitops-bot worker``) consume what the web process queued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.events import PushEvent
from bot.queue import JOB_KEY, JobQueue, redis_client
from bot.settings import Settings
from tests.test_queue import REPO, pr_event
from workers.celery_app import celery_config

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


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = dict(os.environ, REDIS_URL=redis_url, GITOPS_DATA_DIR=str(tmp_path))
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
    redis_url: str, start_worker: object
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
    start_worker()  # type: ignore[operator]
    wait_for_state(client, preview.job_id, "done")
    wait_for_state(client, deploy.job_id, "done")
    counts = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).jobs_processed()
    assert counts == {("preview", "done"): 1, ("deploy", "done"): 1}
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
    env = dict(os.environ, REDIS_URL=redis_url)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app:app",
            "worker",
            "--queues",
            "previews",
            "--concurrency",
            "1",
            "--include",
            "tests.worker_tasks",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=log,
        stderr=log,
        cwd=Path(__file__).parents[1],
    )
    client = redis.Redis.from_url(redis_url)
    queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
    message = queue.celery_message(
        task_name="gitops.test.slow",
        task_id="slow-1",
        args=("k", 60),
        queue="previews",
        summary="slow",
    )
    client.lpush("previews", message)
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
