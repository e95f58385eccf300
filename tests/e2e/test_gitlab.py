"""A merge request's whole life on GitLab, end to end: ``gitops-bot serve``, the fake GitLab and
the local Kubernetes API server, each its own process, wired only by ``GITLAB_URL``,
``GITLAB_TOKEN``, ``GITLAB_WEBHOOK_SECRET`` and ``KUBECONFIG`` — the same journey as on GitHub
(``test_github.py``), through python-gitlab: one note edited in place, a commit status, an
``eyes`` award for a Developer's ``/sync`` and a refusal for a Reporter's."""

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

PROJECT = "acme/platform/shop"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture(tmp_path_factory, "gitlab")


def sticky(stack: Stack, iid: int) -> Any:
    """The bot's one preview note (fails if there are two)."""
    found = [n for n in stack.bot_comments(PROJECT, iid) if "GitOps preview" in n.body]
    assert len(found) <= 1, [n.body[:200] for n in found]
    return found[0] if found else None


def test_a_merge_request_from_open_to_sync(stack: Stack) -> None:
    timings: dict[str, float] = {}
    stack.create_repo(PROJECT, FILES)
    stack.grant(PROJECT, "dana", "write")  # Developer
    stack.grant(PROJECT, "rory", "read")  # Reporter
    stack.deploy(PROJECT)
    bot_id = stack.forge.add_user(BOT_LOGIN).id

    # 1. opened: a pending status at once, then one note with the live diff and success
    started = time.monotonic()
    stack.forge.commit(PROJECT, "feature", CHANGE)
    stack.forge.open_merge_request(PROJECT, source_branch="feature", author="dana")
    delivery = stack.forge.get("deliveries")[-1]
    assert delivery.status == 202 and delivery.answer["action"] == "queued", delivery.answer
    head = stack.head(PROJECT, 1)
    statuses = stack.wait_until(
        lambda: stack.settled_statuses(PROJECT, head), "the preview's final status"
    )
    timings["opened → note"] = time.monotonic() - started
    assert statuses[0] == (stack.in_progress, f"Previewing the merge of {head[:7]} into main…")
    assert statuses[-1] == ("success", "1 app: +0 ~2 -0"), statuses
    note = sticky(stack, 1)
    assert note is not None, stack.diagnosis()
    assert "-  greeting: hello" in note.body and "+  greeting: bonjour" in note.body, note.body
    assert "web-credentials" in note.body
    assert SECRET_BEFORE not in note.body and SECRET_AFTER not in note.body
    assert "api-config" not in note.body

    # 2. new commits: the same note edited, a status on the new head
    started = time.monotonic()
    stack.forge.commit(PROJECT, "feature", SECOND_CHANGE)
    new_head = stack.head(PROJECT, 1)
    assert new_head != head
    statuses = stack.wait_until(
        lambda: stack.settled_statuses(PROJECT, new_head), "the new head's status"
    )
    timings["push → note edited"] = time.monotonic() - started
    assert statuses[-1][0] == "success", statuses
    edited = sticky(stack, 1)
    assert edited.id == note.id
    assert "+  greeting: salut" in edited.body and "bonjour" not in edited.body

    # 3. /sync by a Developer: the eyes award at once, the preview re-run on the cluster as it is
    stack.cluster.kubectl(*HAND_EDIT)
    started = time.monotonic()
    command = stack.forge.comment_as("dana", PROJECT, 1, "/sync")

    def awarded() -> bool:
        (found,) = [n for n in stack.comments(PROJECT, 1) if n.id == command]
        return any(a.name == "eyes" and a.user_id == bot_id for a in found.awards)

    stack.wait_until(awarded, "an eyes award on dana's /sync")
    timings["/sync → award"] = time.monotonic() - started

    def rerun_done() -> list[tuple[str, str]] | None:
        statuses = stack.settled_statuses(PROJECT, new_head)
        rerun = statuses and any(d.startswith("Re-running the preview") for _, d in statuses)
        return statuses if rerun else None

    stack.wait_until(rerun_done, "the re-run's final status")
    assert "hola" in sticky(stack, 1).body  # the hand edit the merge overwrites
    timings["/sync → note"] = time.monotonic() - started
    synced = sticky(stack, 1)
    assert synced.id == note.id
    assert "Already differs in the cluster; merging also overwrites it" in synced.body
    statuses = stack.statuses(PROJECT, new_head)
    assert (stack.in_progress, "Re-running the preview (/sync by dana)…") in statuses, statuses
    # the job records its outcome just after its last post
    stack.wait_until(lambda: "synced" in stack.job_states("command"), "the /sync job recorded")

    # 4. /sync by a Reporter: refused in one reply, nothing re-run
    before = len(stack.statuses(PROJECT, new_head))
    refused = stack.forge.comment_as("rory", PROJECT, 1, "/sync")
    replies = stack.wait_until(
        lambda: [n for n in stack.bot_comments(PROJECT, 1) if "rory may not" in n.body],
        "a reply refusing rory's /sync",
    )
    assert len(replies) == 1
    stack.wait_until(lambda: "refused" in stack.job_states("command"), "the job recorded")
    assert len(stack.statuses(PROJECT, new_head)) == before
    (refused_note,) = [n for n in stack.comments(PROJECT, 1) if n.id == refused]
    assert refused_note.awards == []

    for posted in stack.bot_comments(PROJECT, 1):
        assert SECRET_BEFORE not in posted.body and SECRET_AFTER not in posted.body
    assert stack.bot_token not in stack.bot.process.output()
    print("\n" + "\n".join(f"  {step}: {seconds:.1f} s" for step, seconds in timings.items()))
