"""Deploy on merge, end to end (issue 15.9), on GitHub and on GitLab: ``gitops-bot serve``
(embedded Redis, Celery workers, gunicorn), the fake forge and the local Kubernetes API server,
each its own process, wired only by URLs and settings. Webhooks are the fake's own deliveries.

The journeys, each on a repository of its own: a merge deployed (objects in the cluster and
healthy, the status, one deploy comment on the PR/MR saying "as previewed"); a later merge
removing an object (pruned); a ``:broken`` image (failure naming the Deployment) keeping the one
deploy worker busy while two merges land back to back in another repository (the cluster ends
at the newer one, the older says superseded); the deploy worker's pool process SIGKILLed
mid-deploy (the job runs again, one report); a paused app (``paused`` on the commit and in the
comment, deployed by ``gitops-bot resume``, which finds serve's embedded Redis by itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import GITOPS_BOT, Stack, stack_fixture

pytestmark = pytest.mark.slow


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value}\n"


def deployment(name: str, image: str) -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n"
        f"  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
        f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n"
        f"        - name: {name}\n          image: {image}\n"
    )


def files(stuck: int = 60) -> dict[str, str | bytes | None]:
    return {
        ".gitops.yaml": (
            "version: 1\napps:\n"
            "  - {name: web, path: web, namespace: web, createNamespace: true, "
            f"stuckPodTimeout: {stuck}}}\n"
        ),
        "web/config.yaml": configmap("web-config", "one"),
        "web/extra.yaml": configmap("web-extra", "one"),
    }


@pytest.fixture(scope="module", params=["github", "gitlab"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # stopping serve with a job running waits out the workers' shutdown grace: keep it short
    yield from stack_fixture(
        tmp_path_factory, request.param, bot_env={"GITOPS_WORKER_SHUTDOWN_GRACE": "1"}
    )


def repo_name(stack: Stack, name: str) -> str:
    return f"acme/{name}" if stack.provider == "github" else f"acme/deploys/{name}"


def open_pr(stack: Stack, repo: str, branch: str, change: dict[str, str | bytes | None]) -> int:
    stack.forge.commit(repo, branch, change)
    if stack.provider == "github":
        return int(stack.forge.open_pull_request(repo, head=branch, author="alice"))
    return int(stack.forge.open_merge_request(repo, source_branch=branch, author="alice"))


def merge(stack: Stack, repo: str, number: int) -> str:
    if stack.provider == "github":
        return str(stack.forge.merge_pull_request(repo, number))
    return str(stack.forge.merge_merge_request(repo, number))


def deployed(stack: Stack, repo: str, sha: str) -> tuple[str, str] | None:
    """The final ``gitops/deploy`` status of ``sha`` (None while there is none, or pending)."""
    found = [s for s in stack.statuses(repo, sha) if s]
    settled = stack.settled_statuses(repo, sha)
    return settled[-1] if settled and found else None


def deploy_status(stack: Stack, repo: str, sha: str) -> tuple[str, str] | None:
    statuses = stack.statuses(repo, sha)
    return statuses[-1] if statuses else None


def reports(stack: Stack, repo: str, number: int) -> list[Any]:
    return [c for c in stack.bot_comments(repo, number) if "gitops-bot:deploy" in c.body]


def preview_posted(stack: Stack, repo: str, number: int) -> bool:
    return any("gitops-bot:preview" in c.body for c in stack.bot_comments(repo, number))


def value_of(stack: Stack, name: str, namespace: str = "web") -> str:
    return stack.cluster.kubectl(
        "get", "configmap", name, "-n", namespace, "-o", "jsonpath={.data.value}", check=False
    )


def run_record(stack: Stack, repo: str, sha: str) -> str:
    key = f"gitops:deploy:{stack.provider}:{repo.lower()}:run:{sha}"
    raw = stack.bot.redis().get(key)
    return raw.decode() if raw else ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def deploy_pool_process(stack: Stack) -> int:
    """The pool process of serve's deploys worker (GITOPS_DEPLOY_CONCURRENCY=1)."""
    for pid in children(stack.bot.process.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"deploys" in cmdline and b"worker" in cmdline:
            (pool,) = children(pid)
            return pool
    raise AssertionError("no deploys worker under serve")


def cli(stack: Stack, *args: str) -> str:
    """``gitops-bot ARGS`` beside serve: only GITOPS_DATA_DIR says where its Redis is."""
    env = {**stack.env, "GITOPS_DATA_DIR": str(stack.bot.data_dir)}
    result = subprocess.run(
        [GITOPS_BOT, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_merge_is_deployed_healthy_and_reported_as_previewed_then_pruned(stack: Stack) -> None:
    repo = repo_name(stack, "shop")
    stack.create_repo(repo, files())
    number = open_pr(
        stack, repo, "feature",
        {"web/config.yaml": configmap("web-config", "two"), "web/app.yaml": deployment("app", "nginx:1.25")},
    )  # fmt: skip
    stack.wait_until(lambda: preview_posted(stack, repo, number), "the PR's preview comment")
    head = stack.head(repo, number)
    stack.wait_until(lambda: stack.settled_statuses(repo, head), "the preview's status")
    # another open PR previewed the same app: the deploy moves its base, so it is previewed again
    other = open_pr(stack, repo, "other", {"web/extra.yaml": configmap("web-extra", "other")})
    other_head = stack.head(repo, other)
    stack.wait_until(lambda: stack.settled_statuses(repo, other_head), "the other PR's preview")
    previews = len(stack.statuses(repo, other_head))
    sha = merge(stack, repo, number)
    final = stack.wait_until(lambda: deployed(stack, repo, sha), "the merge's deploy status")
    assert final == ("success", "1 app deployed and healthy: +4 ~0 -0 · as previewed"), final
    assert stack.statuses(repo, sha)[0] == (stack.in_progress, f"Deploying {sha[:7]}…")
    assert value_of(stack, "web-config") == "two"
    ready = stack.cluster.kubectl(
        "get", "deployment", "app", "-n", "web", "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready == "1"
    (report,) = reports(stack, repo, number)
    assert "**As previewed.**" in report.body and "`web` deployed" in report.body
    stack.wait_until(
        lambda: (
            len(stack.statuses(repo, other_head)) > previews
            and stack.settled_statuses(repo, other_head)
        ),
        "the other PR previewed again on the deployed base",
    )

    # a later merge removing an object: pruned, and the report lists the deletion
    second = open_pr(stack, repo, "cleanup", {"web/extra.yaml": None})
    stack.wait_until(lambda: preview_posted(stack, repo, second), "the second PR's preview")
    pruned = merge(stack, repo, second)
    final = stack.wait_until(lambda: deployed(stack, repo, pruned), "the prune's deploy status")
    assert final == ("success", "1 app deployed and healthy: +0 ~0 -1 · as previewed"), final
    assert stack.cluster.kubectl("get", "configmap", "web-extra", "-n", "web", check=False) == ""
    (report,) = reports(stack, repo, second)
    assert "ConfigMap web/web-extra" in report.body


def test_a_broken_image_fails_naming_the_deployment_while_two_merges_land_back_to_back(
    stack: Stack,
) -> None:
    broken, busy = repo_name(stack, "broken"), repo_name(stack, "busy")
    stack.create_repo(broken, files(stuck=3))
    stack.create_repo(busy, files())
    number = open_pr(stack, broken, "image", {"web/app.yaml": deployment("app", "nginx:broken")})
    failing = merge(stack, broken, number)
    # the one deploy worker waits for the broken rollout (stuckPodTimeout: 3 s) ...
    stack.wait_until(lambda: '"state": "running"' in run_record(stack, broken, failing), "busy")
    # ... while two merges land in another repository, one after the other
    one = open_pr(stack, busy, "one", {"web/config.yaml": configmap("web-config", "first")})
    two = open_pr(stack, busy, "two", {"web/extra.yaml": configmap("web-extra", "second")})
    older = merge(stack, busy, one)
    newer = merge(stack, busy, two)
    state, description = stack.wait_until(
        lambda: deployed(stack, broken, failing), "the broken deploy's status", timeout=90
    )
    failed = "failure" if stack.provider == "github" else "failed"  # GitLab's word
    assert state == failed and description.startswith("web: Deployment web/app degraded"), (
        state,
        description,
    )
    (report,) = reports(stack, broken, number)
    assert "ImagePullBackOff" in report.body or "ErrImagePull" in report.body
    assert f"{failing[:7]} is applied, but not every object is healthy" in report.body
    assert stack.wait_until(lambda: deployed(stack, busy, newer), "the newer merge's status")[
        0
    ] == ("success")
    assert stack.wait_until(lambda: deployed(stack, busy, older), "the older merge's status") == (
        "success",
        f"Superseded by {newer[:7]} before it deployed: the newer commit deploys these changes",
    )
    assert value_of(stack, "web-config") == "first" and value_of(stack, "web-extra") == "second"
    (superseded,) = reports(stack, busy, one)
    assert f"superseded by {newer[:7]}" in superseded.body


def test_a_deploy_whose_worker_process_is_killed_completes_with_one_report(stack: Stack) -> None:
    repo = repo_name(stack, "killed")
    stack.create_repo(repo, files())
    number = open_pr(stack, repo, "feature", {"web/app.yaml": deployment("app", "nginx:1.25")})
    sha = merge(stack, repo, number)
    stack.wait_until(lambda: '"state": "running"' in run_record(stack, repo, sha), "applying")
    os.kill(deploy_pool_process(stack), signal.SIGKILL)
    final = stack.wait_until(lambda: deployed(stack, repo, sha), "the deploy after the kill")
    assert final[0] == "success", final
    assert len(reports(stack, repo, number)) == 1
    assert "signal 9" in stack.bot.process.output()  # it was killed, and ran again at once


def test_a_paused_app_is_reported_paused_then_deployed_on_resume(stack: Stack) -> None:
    repo = repo_name(stack, "frozen")
    stack.create_repo(repo, files())
    out = cli(stack, "pause", "--repo", repo, "--app", "web", "--reason", "freeze", "--by", "ops")
    assert out.startswith(f"paused app web of {repo}: freeze")
    number = open_pr(stack, repo, "feature", {"web/config.yaml": configmap("web-config", "new")})
    sha = merge(stack, repo, number)
    stack.wait_until(
        lambda: (deploy_status(stack, repo, sha) or ("", ""))[1].startswith("Paused: web"),
        "the paused status",
    )
    ((state, description),) = stack.statuses(repo, sha)  # the first status says paused already
    assert state == stack.in_progress
    assert description.startswith(
        f"Paused: web (freeze; paused by ops for app web of {repo.lower()})"
    )
    (report,) = stack.wait_until(lambda: reports(stack, repo, number), "the paused report")
    assert "`web` **paused**" in report.body
    assert value_of(stack, "web-config") in ("", "one")
    assert 'gitops_deploys_paused{app="web"' in stack.bot.metrics()
    cli(stack, "resume", "--repo", repo, "--app", "web")
    final = stack.wait_until(lambda: deployed(stack, repo, sha), "the deploy after resume")
    assert final[0] == "success", final
    assert value_of(stack, "web-config") == "new"
    (report,) = reports(stack, repo, number)
    assert "`web` deployed" in report.body
