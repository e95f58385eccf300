"""Reconciled, not only webhook-driven (issue 16.5), end to end on GitHub and on GitLab:
``gitops-bot serve`` with its beat, the fake forge and the local Kubernetes API server, each its
own process, with drift and catch-up intervals of a few seconds set through settings.

The journeys: objects deleted by hand in the cluster open one drift issue, edited while the
drift lasts and closed after the next deploy; an app with ``selfHeal: true`` edited by hand is
re-applied within an interval and the issue says so; a merge whose push delivery was lost is
deployed by the catch-up, and an open PR/MR whose delivery was lost is previewed by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import BOT_LOGIN, Stack, stack_fixture
from tests.e2e.test_deploys import configmap, deployed, merge, open_pr, preview_posted, value_of

pytestmark = pytest.mark.slow

INTERVAL = "2"


@pytest.fixture(scope="module", params=["github", "gitlab"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from stack_fixture(
        tmp_path_factory,
        request.param,
        bot_env={
            "GITOPS_WORKER_SHUTDOWN_GRACE": "1",
            "GITOPS_DRIFT_INTERVAL": INTERVAL,
            "GITOPS_RECONCILE_INTERVAL": INTERVAL,
        },
    )


def repo_name(stack: Stack, name: str) -> str:
    return f"acme/{name}" if stack.provider == "github" else f"acme/reconcile/{name}"


def files() -> dict[str, str | bytes | None]:
    return {
        ".gitops.yaml": (
            "version: 1\napps:\n"
            "  - {name: web, path: web, namespace: drift-web, createNamespace: true}\n"
            "  - {name: api, path: api, namespace: drift-api, createNamespace: true, "
            "selfHeal: true}\n"
        ),
        "web/a.yaml": configmap("a", "one"),
        "web/b.yaml": configmap("b", "one"),
        "web/c.yaml": configmap("c", "one"),
        "api/d.yaml": configmap("d", "one"),
    }


def drift_issue(stack: Stack, repo: str) -> tuple[int, bool, str] | None:
    """(number, open, body) of the bot's drift issue, None while there is none; fails when
    there are two."""
    found = []
    for issue in stack.forge.issues(repo):
        body = issue.body if stack.provider == "github" else issue.description
        if body.startswith("<!-- gitops-bot:drift -->"):
            number = issue.number if stack.provider == "github" else issue.iid
            found.append((number, issue.state in ("open", "opened"), body))
    assert len(found) <= 1, f"{len(found)} drift issues"
    return found[0] if found else None


def issue_showing(stack: Stack, repo: str, text: str) -> tuple[int, bool, str] | None:
    found = drift_issue(stack, repo)
    return found if found is not None and text in found[2] else None


def issue_closed(stack: Stack, repo: str) -> tuple[int, bool, str] | None:
    found = drift_issue(stack, repo)
    return found if found is not None and not found[1] else None


def issue_comments(stack: Stack, repo: str, number: int) -> list[str]:
    if stack.provider == "github":
        return [c.body for c in stack.forge.comments(repo, number) if c.author == BOT_LOGIN]
    return [n.body for n in stack.forge.issue_notes(repo, number)]


def merged_and_deployed(stack: Stack, repo: str, branch: str, change: dict[str, Any]) -> str:
    number = open_pr(stack, repo, branch, change)
    stack.wait_until(lambda: preview_posted(stack, repo, number), f"the preview of {branch}")
    sha = merge(stack, repo, number)
    final = stack.wait_until(lambda: deployed(stack, repo, sha), f"the deploy of {branch}")
    assert final[0] == "success", final
    return sha


def test_drift_is_reported_edited_and_closed_and_self_heal_reverts_a_hand_edit(
    stack: Stack,
) -> None:
    repo = repo_name(stack, "drifty")
    stack.create_repo(repo, files())
    merged_and_deployed(stack, repo, "first", {"web/a.yaml": configmap("a", "two")})
    assert value_of(stack, "a", "drift-web") == "two"
    # a hand edit: an object deleted in the cluster
    stack.cluster.kubectl("delete", "configmap", "b", "-n", "drift-web")
    number, is_open, body = stack.wait_until(
        lambda: issue_showing(stack, repo, "ConfigMap drift-web/b"), "the drift issue"
    )
    assert is_open and "ConfigMap drift-web/c" not in body
    # the drift grows: the same issue is edited
    stack.cluster.kubectl("delete", "configmap", "c", "-n", "drift-web")
    edited = stack.wait_until(
        lambda: issue_showing(stack, repo, "ConfigMap drift-web/c"), "the drift issue edited"
    )
    assert edited[0] == number and edited[1]
    # self-heal: an edit to the selfHeal app is reverted within an interval, and said
    stack.cluster.kubectl(
        "patch", "configmap", "d", "-n", "drift-api", "--type=merge",
        "-p", '{"data":{"value":"by-hand"}}',
    )  # fmt: skip
    stack.wait_until(
        lambda: value_of(stack, "d", "drift-api") == "one", "the hand edit reverted", timeout=30
    )
    stack.wait_until(
        lambda: any("Self-heal re-applied `api`" in c for c in issue_comments(stack, repo, number)),
        "the heal said on the issue",
    )
    # the next deploy of web puts Git back: the issue is closed with a comment
    merged_and_deployed(stack, repo, "second", {"web/a.yaml": configmap("a", "three")})
    closed = stack.wait_until(lambda: issue_closed(stack, repo), "the drift issue closed")
    assert closed[0] == number and "No drift" in closed[2]
    assert "Drift is gone" in issue_comments(stack, repo, number)[-1]


def test_the_catch_up_deploys_a_merge_and_previews_a_pr_whose_deliveries_were_lost(
    stack: Stack,
) -> None:
    repo = repo_name(stack, "lost")
    stack.create_repo(repo, files())
    # a first delivery: the bot now serves the repository
    first = open_pr(stack, repo, "first", {"web/a.yaml": configmap("a", "lost-merge")})
    stack.wait_until(lambda: preview_posted(stack, repo, first), "the first preview")
    hooks = stack.forge.get("hooks")
    stack.forge.set("hooks", [])  # the bot is away: every delivery is lost
    sha = merge(stack, repo, first)
    second = open_pr(stack, repo, "second", {"web/b.yaml": configmap("b", "lost-pr")})
    stack.forge.set("hooks", hooks)
    final = stack.wait_until(
        lambda: deployed(stack, repo, sha), "the lost merge deployed by the catch-up"
    )
    assert final[0] == "success", final
    assert value_of(stack, "a", "drift-web") == "lost-merge"
    stack.wait_until(
        lambda: preview_posted(stack, repo, second), "the lost PR previewed by the catch-up"
    )
    metrics = stack.bot.metrics()
    assert 'gitops_catchup_missed_work_total{job="deploy"}' in metrics
    assert 'gitops_catchup_missed_work_total{job="preview"}' in metrics
