"""Worker liveness without remote control: heartbeat files (workers/heartbeat.py) and the probe
that reads them (``python -m workers.liveness``, the livenessProbe of deploy/base/worker.yaml).

Real Celery workers against a real Redis: a consuming worker beats; a frozen main process
(SIGSTOP) and a worker whose Redis went away are reported dead by name, and both come back alive
when they recover. The probe alone: fresh, stale, none at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.embedded_redis import EmbeddedRedis
from bot.processes import celery_command
from workers.liveness import HEARTBEAT_SUBDIR, check

INTERVAL = 0.2
MAX_AGE = 1.5


def probe(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The probe exactly as Kubernetes runs it, with GITOPS_DATA_DIR from the environment."""
    return subprocess.run(
        [sys.executable, "-m", "workers.liveness", "--max-age", str(MAX_AGE)],
        env=dict(os.environ, GITOPS_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


def alive(data_dir: Path) -> bool:
    return check(data_dir / HEARTBEAT_SUBDIR, max_age=MAX_AGE).alive


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(redis_url: str) -> subprocess.Popen[bytes]:
        command = celery_command(
            "worker",
            "--queues",
            "previews",
            "--concurrency",
            "1",
            "--hostname",
            "previews@liveness-test",
            "--without-gossip",
            "--without-mingle",
        )
        env = dict(
            os.environ,
            REDIS_URL=redis_url,
            GITOPS_DATA_DIR=str(tmp_path / "data"),
            GITOPS_WORKER_HEARTBEAT=str(INTERVAL),
        )
        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        processes.append(proc)
        return proc

    yield start
    for proc in processes:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_consuming_worker_is_alive_and_a_frozen_one_is_reported_dead(
    redis_url: str, start_worker: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    worker = start_worker(redis_url)
    wait_until(lambda: alive(data), 60, "the worker beats")
    answer = probe(data)
    assert answer.returncode == 0, answer.stdout
    assert answer.stdout.strip() == "alive: previews@liveness-test"

    os.kill(worker.pid, signal.SIGSTOP)  # the main process hangs; nothing else changes
    wait_until(lambda: not alive(data), 10, "the frozen worker goes stale")
    answer = probe(data)
    assert answer.returncode == 1
    assert "worker previews@liveness-test: last heartbeat" in answer.stdout

    os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: alive(data), 10, "the thawed worker beats again")
    assert probe(data).returncode == 0


@pytest.mark.slow
def test_a_worker_without_redis_is_reported_dead_until_it_consumes_again(
    start_worker: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        start_worker(server.url)
        wait_until(lambda: alive(data), 60, "the worker beats")

        server.stop()
        wait_until(lambda: not alive(data), 15, "the worker that lost Redis goes stale")
        assert "previews@liveness-test" in probe(data).stdout

        server.start()
        wait_until(lambda: alive(data), 60, "the worker reconnects and beats again")
    finally:
        server.stop()


@pytest.mark.slow
def test_a_worker_that_never_reaches_redis_is_stale_not_absent(
    start_worker: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    start_worker(f"unix://{tmp_path / 'nobody-listens.sock'}")
    heartbeat = data / HEARTBEAT_SUBDIR / "previews@liveness-test"
    wait_until(heartbeat.exists, 60, "the worker writes its first heartbeat")
    wait_until(lambda: not alive(data), 10, "the unconnected worker goes stale")
    assert "previews@liveness-test: last heartbeat" in probe(data).stdout


def test_the_probe_accepts_fresh_heartbeats_only(tmp_path: Path) -> None:
    now = 1_000_000.0
    (tmp_path / "previews@pod").touch()
    (tmp_path / "deploys@pod").touch()
    os.utime(tmp_path / "previews@pod", (now - 5, now - 5))
    os.utime(tmp_path / "deploys@pod", (now - 59, now - 59))
    verdict = check(tmp_path, max_age=60, now=now)
    assert verdict.alive
    assert verdict.workers == ("deploys@pod", "previews@pod")

    os.utime(tmp_path / "deploys@pod", (now - 61, now - 61))
    verdict = check(tmp_path, max_age=60, now=now)
    assert not verdict.alive
    assert verdict.problems == (
        "worker deploys@pod: last heartbeat 61 s ago (limit 60 s); its main process is hung "
        "or has not been connected to Redis since",
    )


def test_no_heartbeat_at_all_is_dead_and_says_where_it_looked(tmp_path: Path) -> None:
    answer = probe(tmp_path)
    assert answer.returncode == 1
    assert answer.stdout.startswith(f"no worker heartbeat in {tmp_path / HEARTBEAT_SUBDIR}")
    (tmp_path / HEARTBEAT_SUBDIR).mkdir()
    assert not check(tmp_path / HEARTBEAT_SUBDIR, max_age=60).alive


def test_a_malformed_setting_fails_the_probe_naming_it(tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "workers.liveness"],
        env=dict(os.environ, GITOPS_DATA_DIR=str(tmp_path), GITOPS_JOB_TIMEOUT="soon"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 1
    assert "GITOPS_JOB_TIMEOUT is malformed" in answer.stdout
