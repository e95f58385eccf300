"""The metrics: what is recorded where, and a real ``gitops-bot worker``'s own ``/metrics``.

Event metrics are read from the process that recorded them (``bot.metrics.REGISTRY``) or
scraped from a real worker; the installation's figures kept in Redis from the web's
``/metrics``. The forges are the fake GitHub and GitLab driven by the real PyGithub and
python-gitlab; the cluster is the kube emulator.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.app import create_app
from bot.errors import ForgeAccessDenied, ForgeUnavailable
from bot.forges import connect_by_name
from bot.forges import github as github_forge
from bot.forges.github import GitHubConfig, GitHubForge
from bot.jobs.deploy import deploy_commit
from bot.queue import JOB_KEY, JobQueue, redis_client
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import FakeGitLab
from tests.jobs_support import BASE_FILES, REPO, configmap
from tests.test_jobs_github import SECRET, pr_event

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, labels) → value."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def local(name: str, **labels: str) -> float:
    """A metric's value in this process (0 when never recorded)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- histograms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buckets", "smallest", "largest"),
    [
        (metrics.RUN_BUCKETS, 1.0, float(Settings().job_timeout)),
        (metrics.QUEUE_WAIT_BUCKETS, 0.25, float(Settings().job_timeout)),
    ],
)
def test_buckets_tell_seconds_long_jobs_apart_up_to_the_job_timeout(
    buckets: tuple[float, ...], smallest: float, largest: float
) -> None:
    assert list(buckets) == sorted(set(buckets))
    assert buckets[0] <= smallest, "a sub-second run would share the first bucket with slow ones"
    assert buckets[-1] >= largest, "jobs up to GITOPS_JOB_TIMEOUT must not all land in +Inf"
    # previews and /sync take 1-30 s: an operator must see a 2 s job turn into a 10 s one
    assert len([b for b in buckets if 1 <= b <= 30]) >= 5


def test_queue_wait_counts_from_queueing_or_from_when_a_retry_was_due() -> None:
    assert metrics.queue_wait("100.0", None, now=102.5) == 2.5
    # a retry scheduled for 110 waited from then, not from its first queueing
    assert metrics.queue_wait("100.0", "1970-01-01T00:01:50+00:00", now=111.0) == 1.0
    assert metrics.queue_wait(None, None, now=5.0) is None
    assert metrics.queue_wait("not a time", None, now=5.0) is None
    assert metrics.queue_wait("200.0", None, now=100.0) == 0.0  # clocks disagree: no negatives


# --- forge calls -------------------------------------------------------------------------------


def test_github_calls_are_counted_by_status_retries_included(
    fake_github: FakeGitHub, github_settings: Settings
) -> None:
    fake_github.create_repo(REPO, files=BASE_FILES)
    fake_github.set_permission(REPO, "gitops-bot", "write")
    before = {s: local("gitops_forge_requests_total", provider="github", status=s)
              for s in ("200", "502", "404", "error")}  # fmt: skip
    forge = connect_by_name(github_settings, "github", REPO)
    fake_github.fail(502, times=1, path=f"/repos/{REPO}")
    assert forge.repository_info().default_branch == "main"
    answered = [r.status for r in fake_github.api_requests()]
    assert answered.count(502) == 1
    assert local("gitops_forge_requests_total", provider="github", status="502") == (
        before["502"] + 1
    )
    assert local("gitops_forge_requests_total", provider="github", status="200") == (
        before["200"] + answered.count(200)
    )
    with pytest.raises(ForgeAccessDenied, match="cannot read acme/missing"):
        connect_by_name(github_settings, "github", "acme/missing").repository_info()
    assert local("gitops_forge_requests_total", provider="github", status="404") > before["404"]


def test_a_forge_that_does_not_answer_is_counted_as_error() -> None:
    github_forge.clear_caches()
    config = GitHubConfig(
        api_url=f"http://127.0.0.1:{free_port()}",
        token="ghp_unreachable",
        retries=2,
        backoff_factor=0.01,
    )
    before = local("gitops_forge_requests_total", provider="github", status="error")
    with pytest.raises(ForgeUnavailable, match=r"could not be reached|kept failing"):
        GitHubForge(config, REPO).repository_info()
    # the first attempt and each of PyGithub's two retries: three requests without an answer
    assert local("gitops_forge_requests_total", provider="github", status="error") == before + 3
    github_forge.clear_caches()


def test_gitlab_calls_are_counted_by_status_retries_included(
    fake_gitlab: FakeGitLab, gitlab_settings: Settings
) -> None:
    fake_gitlab.create_project(REPO, files=BASE_FILES)
    fake_gitlab.add_member(REPO, "gitops-bot", 30)  # Developer
    before = {s: local("gitops_forge_requests_total", provider="gitlab", status=s)
              for s in ("200", "502")}  # fmt: skip
    forge = connect_by_name(gitlab_settings, "gitlab", REPO)
    fake_gitlab.fail(502, times=1, path="/projects/")
    assert forge.repository_info().default_branch == "main"
    answered = [r.status for r in fake_gitlab.api_requests()]
    assert answered.count(502) == 1  # python-gitlab retried it
    assert local("gitops_forge_requests_total", provider="gitlab", status="502") == (
        before["502"] + 1
    )
    assert local("gitops_forge_requests_total", provider="gitlab", status="200") == (
        before["200"] + answered.count(200)
    )


# --- objects applied and pruned -------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def test_deploys_count_objects_applied_and_pruned_per_target(
    tmp_path: Path, kubeconfig: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    settings = Settings.from_env({"GITOPS_DATA_DIR": str(tmp_path / "data")})
    files: dict[str, str | None] = {
        ".gitops.yaml": "version: 1\napps:\n  - {name: web, path: web, namespace: web}\n",
        "web/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
        "web/a.yaml": configmap("a", "1"),
        "web/b.yaml": configmap("b", "1"),
    }
    target = "kubeconfig"
    before = {c: local("gitops_objects_applied_total", target=target, change=c)
              for c in ("created", "updated", "unchanged")}  # fmt: skip
    pruned = local("gitops_objects_pruned_total", target=target)

    first = deploy_commit(repo, commit(repo, files), settings=settings, kubeconfig=Path(kubeconfig))
    assert not first.has_errors, first.errors
    assert local("gitops_objects_applied_total", target=target, change="created") == (
        before["created"] + 3
    )
    # a dry run applies nothing, so counts nothing
    deploy_commit(repo, "HEAD", settings=settings, kubeconfig=Path(kubeconfig), dry_run=True)
    assert local("gitops_objects_applied_total", target=target, change="created") == (
        before["created"] + 3
    )

    second = commit(repo, {"web/a.yaml": configmap("a", "2"), "web/b.yaml": None})
    result = deploy_commit(repo, second, settings=settings, kubeconfig=Path(kubeconfig))
    assert not result.has_errors, result.errors
    assert local("gitops_objects_applied_total", target=target, change="updated") == (
        before["updated"] + 1
    )
    assert local("gitops_objects_applied_total", target=target, change="unchanged") == (
        before["unchanged"] + 1
    )
    assert local("gitops_objects_pruned_total", target=target) == pruned + 1


# --- the installation's figures on the web's /metrics -----------------------------------------------


def test_drifted_apps_and_merges_that_differed_are_on_the_web_metrics(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    settings = Settings.from_env({"REDIS_URL": redis_url, "GITHUB_WEBHOOK_SECRET": SECRET})
    web = create_app(settings).test_client()

    metrics.record_drifted_apps(client, "acme/app", 2, ttl=60)
    metrics.record_drifted_apps(client, "acme/gone", 1, ttl=0.2)
    metrics.count_differed_from_preview(client, "acme/app")
    metrics.count_differed_from_preview(client, "acme/app")
    found = samples(web.get("/metrics").text)
    assert value(found, "gitops_apps_drifted", repository="acme/app") == 2
    assert value(found, "gitops_apps_drifted", repository="acme/gone") == 1
    assert value(found, "gitops_merges_differed_from_preview_total", repository="acme/app") == 2

    time.sleep(0.3)  # acme/gone's finding expired: the bot no longer serves it
    metrics.record_drifted_apps(client, "acme/app", 0, ttl=60)  # drift repaired
    found = samples(web.get("/metrics").text)
    assert ("gitops_apps_drifted", frozenset({("repository", "acme/gone")})) not in found
    assert value(found, "gitops_apps_drifted", repository="acme/app") == 0
    assert client.hkeys(metrics.DRIFTED_KEY) == [b"acme/app"]


def test_web_metrics_say_redis_is_down_instead_of_failing() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "GITHUB_WEBHOOK_SECRET": SECRET}
    )
    answer = create_app(settings).test_client().get("/metrics")
    assert answer.status_code == 200
    found = samples(answer.text)
    assert value(found, "gitops_queue_up") == 0
    assert not any(name == "gitops_apps_drifted" for name, _ in found)


# --- a real worker's /metrics -----------------------------------------------------------------------


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.create_repo(REPO, files=BASE_FILES)
    fake_github.set_permission(REPO, "gitops-bot", "write")
    for number, branch in ((1, "one"), (2, "two")):
        fake_github.commit(REPO, branch, {"web/a.yaml": configmap("a", str(number + 1))})
        fake_github.open_pull_request(REPO, head=branch, author="alice")
    return fake_github


@pytest.fixture
def worker_env(gh: FakeGitHub, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    from tests.jobs_support import unreachable_kubeconfig

    clusters = tmp_path / "clusters.yaml"
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    clusters.write_text(f"targets:\n  default:\n    kubeconfig: {kubeconfig}\n")
    yield dict(
        os.environ,
        REDIS_URL=redis_url,
        GITHUB_API_URL=gh.url,
        GITHUB_TOKEN=gh.bot_token or "",
        GITOPS_DATA_DIR=str(tmp_path / "worker-data"),
        GITOPS_CLUSTERS_FILE=str(clusters),
        GITOPS_FORGE_WRITE_INTERVAL="0",
        GITOPS_WORKER_HEARTBEAT="0.5",
        GITOPS_WORKER_METRICS_PORT=str(free_port()),
        GITOPS_LOG_FORMAT="json",
    )


def wait_for(client: redis.Redis, job_id: str, states: set[str], proc: subprocess.Popen[bytes],
             log: Path, timeout: float = 90) -> str:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        state = (client.hget(JOB_KEY.format(job_id=job_id), "state") or b"").decode()
        if state in states:
            return state
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(0.2)


@pytest.mark.slow
def test_a_real_worker_serves_its_jobs_metrics(
    gh: FakeGitHub, worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    """Two previews queued before the worker starts: one posted, one failing on a 401 from
    GitHub. The worker's own /metrics, served by `gitops-bot worker` from what its Celery pool
    processes recorded, shows both runs, their queue wait, steps and forge calls."""
    queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
    posted = queue.enqueue(pr_event(gh, 1), provider="github")
    failing = queue.enqueue(pr_event(gh, 2), provider="github")
    gh.fail(401, times=1, path=f"/repos/{REPO}/pulls/2")
    port = worker_env["GITOPS_WORKER_METRICS_PORT"]
    log = tmp_path / "worker.log"
    with log.open("wb") as err, (tmp_path / "worker.out").open("wb") as out:
        worker = subprocess.Popen(
            [GITOPS_BOT, "worker", "--queues", "previews"], env=worker_env, stdout=out, stderr=err
        )
    client = redis.Redis.from_url(redis_url)
    try:
        assert wait_for(client, posted.job_id, {"posted", "failed"}, worker, log) == "posted"
        assert wait_for(client, failing.job_id, {"posted", "failed"}, worker, log) == "failed"
        found = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    run = "gitops_job_run_seconds_count"
    assert value(found, run, job="preview", outcome="posted") == 1
    assert value(found, run, job="preview", outcome="failed") == 1
    # both waited in the queue while the worker started: at least a fraction of a second
    assert value(found, "gitops_job_queue_wait_seconds_count", job="preview") == 2
    assert value(found, "gitops_job_queue_wait_seconds_bucket", job="preview", le="0.1") == 0
    assert value(found, "gitops_job_step_seconds_count", job="preview", step="checkout") == 1
    assert value(found, "gitops_forge_requests_total", provider="github", status="401") == 1
    answered = [r.status for r in gh.api_requests()]
    assert value(found, "gitops_forge_requests_total", provider="github", status="200") == (
        answered.count(200)
    )
    # its log: JSON lines, the supervisor's announcing the port among them, no token
    text = log.read_text()
    assert gh.bot_token and gh.bot_token not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(f":{port}/metrics" in line["message"] for line in lines)
    # the web's figures are not repeated here: they belong to the web's /metrics
    assert not any(name.startswith(("gitops_webhooks", "gitops_queue")) for name, _ in found)


def test_the_readme_lists_every_metric_the_bot_serves(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    metrics.record_drifted_apps(client, "acme/app", 1, ttl=60)
    metrics.count_differed_from_preview(client, "acme/app")
    settings = Settings.from_env({"REDIS_URL": redis_url, "GITHUB_WEBHOOK_SECRET": SECRET})
    text = create_app(settings).test_client().get("/metrics").text
    # (in-process counters also expose `_created` times; the served multiprocess ones do not)
    names = {
        family.name
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")
    }
    # the web's own and, as under `gitops-bot serve`, every metric a worker records
    assert {"gitops_webhooks_received", "gitops_apps_drifted", "gitops_job_run_seconds",
            "gitops_forge_requests", "gitops_catchup_missed_work"} <= names  # fmt: skip
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Metrics and logs") :]
    missing = sorted(name for name in names if f"`{name}" not in section)
    assert not missing, f"README's Metrics and logs section lacks {missing}"
