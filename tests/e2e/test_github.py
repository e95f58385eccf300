"""A pull request's whole life on GitHub, end to end: ``gitops-bot serve`` (gunicorn, embedded
Redis, Celery workers), the fake GitHub and the local Kubernetes API server, each its own
process, wired only by ``GITHUB_API_URL``, ``GITHUB_TOKEN``, ``GITHUB_WEBHOOK_SECRET`` and
``KUBECONFIG``.

The base branch is deployed to the cluster first (``gitops-bot apply``, as the bot would have
deployed it), so the preview is a real live diff: what merging changes in the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import BOT_LOGIN, Stack, stack_fixture
from tests.e2e.sample import (
    CHANGE,
    FILES,
    HAND_EDIT,
    SECOND_CHANGE,
    SECRET_AFTER,
    SECRET_BEFORE,
)

pytestmark = pytest.mark.slow

REPO = "acme/shop"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture(tmp_path_factory, "github")


def sticky(stack: Stack, number: int) -> Any:
    """The bot's one preview comment (fails if there are two)."""
    found = [c for c in stack.bot_comments(REPO, number) if "GitOps preview" in c.body]
    assert len(found) <= 1, [c.body[:200] for c in found]
    return found[0] if found else None


def test_a_pull_request_from_open_to_sync(stack: Stack) -> None:
    timings: dict[str, float] = {}
    stack.create_repo(REPO, FILES)
    stack.grant(REPO, "alice", "write")
    stack.grant(REPO, "mallory", "read")
    stack.deploy(REPO)
    assert stack.cluster.kubectl("get", "configmap", "web-config", "-n", "web")

    # 1. opened: a pending status at once, then one comment with the live diff and success
    started = time.monotonic()
    stack.forge.commit(REPO, "feature", CHANGE)
    stack.forge.open_pull_request(REPO, head="feature", author="alice", title="Say bonjour")
    delivery = stack.forge.get("deliveries")[-1]
    assert (delivery.event, delivery.status) == ("pull_request", 202), delivery.answer
    assert delivery.answer["action"] == "queued", delivery.answer
    head = stack.head(REPO, 1)
    statuses = stack.wait_until(
        lambda: stack.settled_statuses(REPO, head), "the preview's final status"
    )
    timings["opened → comment"] = time.monotonic() - started
    assert statuses[0] == (stack.in_progress, f"Previewing the merge of {head[:7]} into main…")
    assert statuses[-1] == ("success", "1 app: +0 ~2 -0"), statuses
    comment = sticky(stack, 1)
    assert comment is not None, stack.diagnosis()
    body = comment.body
    assert "ConfigMap" in body and "web-config" in body, body
    assert "-  greeting: hello" in body and "+  greeting: bonjour" in body, body
    assert "web-credentials" in body and "password" in body, body  # the key is named …
    assert SECRET_BEFORE not in body and SECRET_AFTER not in body  # … never its value
    assert "api-config" not in body  # an app the PR does not touch is not previewed

    # 2. another push: the same comment edited, a new status on the new head
    started = time.monotonic()
    stack.forge.commit(REPO, "feature", SECOND_CHANGE)
    new_head = stack.head(REPO, 1)
    assert new_head != head
    statuses = stack.wait_until(
        lambda: stack.settled_statuses(REPO, new_head), "the new head's status"
    )
    timings["push → comment edited"] = time.monotonic() - started
    assert statuses[-1][0] == "success", statuses
    edited = sticky(stack, 1)
    assert edited.id == comment.id
    assert "+  greeting: salut" in edited.body and "bonjour" not in edited.body

    # 3. /sync by a writer: 👀 at once, the preview re-run against the cluster as it is now
    stack.cluster.kubectl(*HAND_EDIT)
    started = time.monotonic()
    command = stack.forge.comment_as("alice", REPO, 1, "/sync")

    def reacted() -> bool:
        (found,) = [c for c in stack.comments(REPO, 1) if c.id == command]
        return (BOT_LOGIN, "eyes") in found.reactions

    stack.wait_until(reacted, "an 👀 reaction on alice's /sync")
    timings["/sync → 👀"] = time.monotonic() - started

    def rerun_done() -> list[tuple[str, str]] | None:
        statuses = stack.settled_statuses(REPO, new_head)
        rerun = statuses and any(d.startswith("Re-running the preview") for _, d in statuses)
        return statuses if rerun else None

    stack.wait_until(rerun_done, "the re-run's final status")
    assert "hola" in sticky(stack, 1).body  # the hand edit the merge overwrites
    timings["/sync → comment"] = time.monotonic() - started
    synced = sticky(stack, 1)
    assert synced.id == comment.id
    assert "Already differs in the cluster; merging also overwrites it" in synced.body
    statuses = stack.statuses(REPO, new_head)
    assert (stack.in_progress, "Re-running the preview (/sync by alice)…") in statuses, statuses
    assert statuses[-1][0] == "success"
    # the job records its outcome just after its last post
    stack.wait_until(lambda: "synced" in stack.job_states("command"), "the /sync job recorded")

    # 4. /sync by a reader: refused in one reply, nothing re-run
    before = len(stack.statuses(REPO, new_head))
    refused = stack.forge.comment_as("mallory", REPO, 1, "/sync")
    reply = stack.wait_until(
        lambda: [c for c in stack.bot_comments(REPO, 1) if "mallory may not" in c.body],
        "a reply refusing mallory's /sync",
    )
    assert len(reply) == 1
    stack.wait_until(lambda: "refused" in stack.job_states("command"), "the job recorded")
    assert len(stack.statuses(REPO, new_head)) == before  # nothing re-run
    (refused_comment,) = [c for c in stack.comments(REPO, 1) if c.id == refused]
    assert refused_comment.reactions == []

    # nothing secret anywhere the bot wrote
    for posted in stack.bot_comments(REPO, 1):
        assert SECRET_BEFORE not in posted.body and SECRET_AFTER not in posted.body
    assert stack.bot_token not in stack.bot.process.output()
    print("\n" + "\n".join(f"  {step}: {seconds:.1f} s" for step, seconds in timings.items()))
