"""Deploys under faults (issue 15.8): a worker process SIGKILLed mid-deploy, a worker stopped
mid-job, a lock whose holder died, Redis restarted mid-job, the cluster and the forge out.

The worker tests run real processes: ``gitops-bot worker`` (its supervisor, Celery, the pool
process running the job) against the fake GitHub over HTTP and a kube emulator of its own whose
pods take seconds to become ready, so a deploy is still waiting for health when it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bot.embedded_redis import EmbeddedRedis
from bot.errors import ForgeUnavailable
from bot.forges.base import StatusState
from bot.jobs import deploy as job
from bot.processes import worker_commands, worker_stop_timeout
from bot.queue import JobQueue, redis_client
from bot.settings import Settings
from bot.state import RepoKey
from tests.deploy_support import DEPLOY, Bot, deployment, push_event
from tests.fake_forge.github import FakeGitHub
from tests.jobs_support import (
    REPO,
    Remote,
    configmap,
    memory_forge,
    targets_at,
    unreachable_kubeconfig,
)
from tests.kube_emulator import EmulatorServer
from workers.celery_app import celery_config

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))
SECRET = "s3cret"
CONFIG = "version: 1\napps:\n  - {name: web, path: web, namespace: web, createNamespace: true}\n"


# -- a worker stopped or killed: Celery's side --------------------------------------------------------


def test_workers_are_started_to_hand_running_jobs_back_when_stopped() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis://localhost/0", "GITOPS_WORKER_SHUTDOWN_GRACE": "45"}
    )
    (command,) = worker_commands(settings, queues=["deploys"], env={"PATH": "/bin"})
    assert command._env == {"PATH": "/bin", "REMAP_SIGTERM": "SIGQUIT"}
    assert celery_config(settings)["worker_soft_shutdown_timeout"] == 45
    assert worker_stop_timeout(settings) == 55  # the supervisor kills it only after that


# -- a deploy through real workers ---------------------------------------------------------------------


def test_the_shipped_worker_pods_hand_jobs_back_before_kubernetes_kills_them() -> None:
    base = Path(__file__).parents[1] / "deploy" / "base"
    pod = yaml.safe_load((base / "worker.yaml").read_text())["spec"]["template"]["spec"]
    (generated,) = yaml.safe_load((base / "kustomization.yaml").read_text())["configMapGenerator"]
    literals = dict(item.split("=", 1) for item in generated["literals"])
    settings = Settings.from_env(literals)
    assert worker_stop_timeout(settings) < pod["terminationGracePeriodSeconds"]
    assert "GITOPS_WORKER_SHUTDOWN_GRACE" not in literals  # the default, 20 s


@pytest.fixture
def slow_cluster(tmp_path: Path) -> Iterator[str]:
    """A kube emulator whose pods become ready 3 s after they are created."""
    server = EmulatorServer(controller_delay=3.0)
    server.start()
    try:
        yield server.write_kubeconfig(str(tmp_path / "slow-kubeconfig"))
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def deploy_status(fake: FakeGitHub, sha: str) -> str | None:
    status = fake.latest_status(REPO, sha, DEPLOY)
    return status.state if status is not None else None


class DeployWorkers:
    """`gitops-bot worker --queues deploys` processes against the fake GitHub and a slow
    cluster, and a merged PR whose push is queued as the intake queues it."""

    def __init__(self, gh: FakeGitHub, redis_url: str, tmp_path: Path, kubeconfig: str) -> None:
        self.gh, self.tmp_path = gh, tmp_path
        gh.create_repo(REPO, files={".gitops.yaml": CONFIG, "web/a.yaml": configmap("a", "1")})
        gh.set_permission(REPO, "gitops-bot", "write")
        gh.commit(REPO, "feature", {"web/app.yaml": deployment("app")})
        self.number = gh.open_pull_request(REPO, head="feature", author="alice")
        self.sha = gh.merge_pull_request(REPO, self.number)
        self.client = redis.Redis.from_url(redis_url)
        self.env = dict(
            os.environ,
            REDIS_URL=redis_url,
            GITHUB_API_URL=gh.url,
            GITHUB_TOKEN=gh.bot_token or "",
            GITOPS_DATA_DIR=str(tmp_path / "worker-data"),
            KUBECONFIG=kubeconfig,
            GITOPS_FORGE_WRITE_INTERVAL="0",
            GITOPS_RETRY_DELAY="0.2",
            GITOPS_DEPLOY_LOCK_TTL="3",
            GITOPS_WORKER_HEARTBEAT="0.5",
            GITOPS_WORKER_SHUTDOWN_GRACE="0.5",
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        event = push_event(gh, "0" * 40, self.sha)
        queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
        queue.enqueue(event, provider="github")
        self.deadline = time.monotonic() + 120

    def start(self) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.processes)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [GITOPS_BOT, "worker", "--queues", "deploys"], env=self.env, stdout=out, stderr=out
            )
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp_path.glob("worker-*.log")))

    def wait(self, condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
        while not condition():
            assert proc.poll() is None and time.monotonic() < self.deadline, self.logs()
            time.sleep(0.05)

    def applying(self) -> bool:
        run = self.client.get(RepoKey("github", REPO).run_key(self.sha)) or b""
        return b'"state": "running"' in run

    def deployed(self) -> bool:
        return deploy_status(self.gh, self.sha) == "success"

    def reports(self) -> list[str]:
        return [
            c.body for c in self.gh.comments(REPO, self.number) if "gitops-bot:deploy" in c.body
        ]

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            proc.wait(timeout=60)


@pytest.fixture
def workers(
    fake_github: FakeGitHub, redis_url: str, tmp_path: Path, slow_cluster: str
) -> Iterator[DeployWorkers]:
    found = DeployWorkers(fake_github, redis_url, tmp_path, slow_cluster)
    try:
        yield found
    finally:
        found.stop()


@pytest.mark.slow
def test_a_deploy_whose_worker_process_is_killed_completes_with_one_report(
    workers: DeployWorkers,
) -> None:
    supervisor = workers.start()
    workers.wait(workers.applying, supervisor)  # applying, or waiting for pods (3 s)
    time.sleep(0.5)
    (celery_main,) = children(supervisor.pid)
    (pool_process,) = children(celery_main)
    os.kill(pool_process, signal.SIGKILL)
    workers.wait(workers.deployed, supervisor)
    assert children(supervisor.pid) == [celery_main]  # the worker itself survived
    text = workers.logs()
    assert "WorkerLostError" in text  # it was killed mid-job, and the job ran again at once
    (report,) = workers.reports()
    assert "`web` deployed" in report
    assert workers.client.keys("gitops:deploy:*:lock:*") == []
    assert (workers.gh.bot_token or "?") not in text


@pytest.mark.slow
def test_a_deploy_whose_worker_is_stopped_is_finished_by_the_next_worker_at_once(
    workers: DeployWorkers,
) -> None:
    """`gitops-bot worker` stopped (a pod deleted, a restart) while a deploy waits for health:
    the job is handed back within GITOPS_WORKER_SHUTDOWN_GRACE, and the next worker finishes
    it at once (before, it waited for the visibility timeout: 65 minutes)."""
    first = workers.start()
    workers.wait(workers.applying, first)
    time.sleep(0.5)
    stopped = time.monotonic()
    first.terminate()
    first.wait(timeout=60)
    assert time.monotonic() - stopped < 10
    assert not workers.deployed()
    assert workers.client.llen("deploys") == 1  # the app's job, back on the queue
    second = workers.start()
    workers.wait(workers.deployed, second)
    assert time.monotonic() - stopped < 60
    (report,) = workers.reports()
    assert "`web` deployed" in report


# -- locks -------------------------------------------------------------------------------------------------

HOLDER = """
import sys, time, redis
from bot.state import RenewedLock
lock = RenewedLock(redis.Redis.from_url(sys.argv[1]), "gitops:test:lock", holder="job-a",
                   ttl=1.5, wait=1, what="the test lock")
with lock:
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lock_outlives_its_killed_holder_by_its_ttl_only(redis_url: str) -> None:
    from bot.state import LockBusy, RenewedLock

    client = redis.Redis.from_url(redis_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(2)  # longer than the TTL: renewed while the holder lives
        assert client.get("gitops:test:lock") == b"job-a"
        other = RenewedLock(client, "gitops:test:lock", holder="job-b", ttl=5, wait=0.2, what="x")
        with pytest.raises(LockBusy, match="stayed taken \\(by job job-a\\)"), other:
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        killed = time.monotonic()
        with RenewedLock(client, "gitops:test:lock", holder="job-b", ttl=5, wait=5, what="x"):
            assert time.monotonic() - killed < 2.5  # at most its TTL after the holder died
            assert client.get("gitops:test:lock") == b"job-b"
        assert client.get("gitops:test:lock") is None  # released on exit
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_redelivered_job_takes_its_own_lock_back_at_once(redis_url: str) -> None:
    from bot.state import RenewedLock

    client = redis.Redis.from_url(redis_url)
    client.set("gitops:test:lock", "job-a", px=60_000)  # left by job-a's dead process
    started = time.monotonic()
    with RenewedLock(client, "gitops:test:lock", holder="job-a", ttl=5, wait=0, what="x"):
        assert time.monotonic() - started < 1
        assert 0 < client.pttl("gitops:test:lock") <= 5000  # its own TTL again, renewed
    assert client.get("gitops:test:lock") is None


# -- in-process faults -------------------------------------------------------------------------------------


@pytest.fixture
def bot(tmp_path: Path, redis_url: str, kubeconfig: str) -> Bot:
    remote = Remote(
        tmp_path / "remote.git", {".gitops.yaml": CONFIG, "web/a.yaml": configmap("a", "1")}
    )
    return Bot(remote, memory_forge(remote), redis_url, tmp_path, targets_at(kubeconfig))


def test_an_unreachable_cluster_retries_the_app_then_deploys(
    bot: Bot, tmp_path: Path, kubeconfig: str
) -> None:
    sha = bot.remote.head("main")
    reachable = bot.targets
    bot.targets = targets_at(unreachable_kubeconfig(tmp_path / "down"))
    bot.retries_left = True
    bot.push(sha, drain=False)  # what is deployed cannot be read: the app deploys
    with pytest.raises(job.DeployIncomplete):
        bot.run_next(job_id="app-job")
    state = bot.context().state.run(RepoKey("github", REPO), sha)
    assert state is not None and state["apps"][0]["state"] == "running"
    assert bot.status(sha)[0] == "pending"
    bot.targets = reachable
    bot.queue.insert(0, ("deploy_app", (bot.push_event(sha).to_task(), "default/web")))
    outcome = bot.run_next(job_id="app-job")  # Celery's retry keeps the job id
    assert outcome.outcome == job.DEPLOYED
    assert bot.status(sha)[0] == "success"


def test_an_unreachable_cluster_without_retries_left_fails_and_says_why(
    bot: Bot, tmp_path: Path
) -> None:
    sha = bot.remote.head("main")
    bot.targets = targets_at(unreachable_kubeconfig(tmp_path / "down"))
    bot.push(sha)
    state, description = bot.status(sha)
    assert state == "failure"
    assert description.startswith("web: ")


def test_a_forge_outage_while_reporting_is_retried_and_reported_once(bot: Bot) -> None:
    bot.open(1, "feature", {"web/a.yaml": configmap("a", "2")})
    sha = bot.merge(1)
    bot.retries_left = True
    bot.push(sha, drain=False)
    set_status = bot.forge.set_status
    down = [ForgeUnavailable("GitHub is down")]

    def flaky(sha: str, **kwargs: Any) -> None:  # the report's status write meets an outage
        if kwargs["state"] is StatusState.SUCCESS and down:
            raise down.pop()
        set_status(sha, **kwargs)

    bot.forge.set_status = flaky  # type: ignore[method-assign]
    with pytest.raises(ForgeUnavailable):
        bot.run_next(job_id="app-job")
    # Celery runs the job again: the app ended already, so the job only reports
    bot.queue.insert(0, ("deploy_app", (bot.push_event(sha).to_task(), "default/web")))
    outcome = bot.run_next(job_id="app-job")
    assert outcome.outcome == job.DUPLICATE
    assert bot.status(sha)[0] == "success"
    bot.report(1)  # exactly one


def test_a_redelivered_plan_and_a_duplicate_app_job_change_nothing(bot: Bot) -> None:
    bot.open(1, "feature", {"web/a.yaml": configmap("a", "2")})
    sha = bot.merge(1)
    event = bot.push_event(sha)
    first = job.deploy_push(event, bot.context())
    again = job.deploy_push(event, bot.context())  # the same delivery's job, redelivered
    assert first.outcome == job.PLANNED and again.outcome == job.DUPLICATE
    assert len(bot.queue) == 2  # queued twice: the second finds the app ended
    bot.drain()
    assert [o.outcome for o in bot.outcomes[-2:]] == [job.DEPLOYED, job.DUPLICATE]
    bot.report(1)


@pytest.mark.slow
@pytest.mark.parametrize("down", [1.0, 5.0], ids=["back-before-the-health-wait-ends", "longer"])
def test_redis_restarted_mid_deploy_the_job_completes_or_is_retried_and_no_lock_stays(
    tmp_path: Path, slow_cluster: str, down: float
) -> None:
    """Redis goes away while an app waits for health (pods take 3 s) and comes back with its
    data (the embedded Redis's append-only file): back in time, the job completes; away
    longer, its next write fails as transient, Celery runs it again and that run completes
    (the same job takes its lock back). Either way one report, and no lock stays held."""
    with EmbeddedRedis(tmp_path / "redis", fsync="always") as server:
        remote = Remote(
            tmp_path / "remote.git",
            {".gitops.yaml": CONFIG, "web/app.yaml": deployment("app")},
        )
        bot = Bot(remote, memory_forge(remote), server.url, tmp_path, targets_at(slow_cluster))
        bot.retries_left = True
        sha = remote.head("main")
        bot.push(sha, drain=False)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                bot.run_next(job_id="app-job")
            except Exception as exc:
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(1.0)  # waiting for the Deployment's pods
        server.stop()
        time.sleep(down)
        server.start()
        worker.join(timeout=120)
        client = redis.Redis.from_url(server.url)
        if down < 3:
            assert errors == []
        else:
            from bot.errors import TransientError

            assert len(errors) == 1 and isinstance(errors[0], TransientError), errors
            bot.queue.insert(0, ("deploy_app", (bot.push_event(sha).to_task(), "default/web")))
            assert bot.run_next(job_id="app-job").outcome == job.DEPLOYED
        assert bot.status(sha)[0] == "success"
        deadline = time.monotonic() + 10
        while client.keys("gitops:deploy:*:lock:*"):
            assert time.monotonic() < deadline, "a lock stayed held"
            time.sleep(0.2)
