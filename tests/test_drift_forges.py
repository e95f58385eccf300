"""What the drift job's issue costs on the forge, through the real clients: PyGithub against the
fake GitHub and python-gitlab against the fake GitLab (each held to its forge's published
contract), the context built as the worker builds it, a real Redis and the kube emulator.

The issue's number is remembered in Redis once found or opened, and so is "a scan found none":
a round fetches that one issue, or asks nothing; the issues are listed again only when nothing
is known (Redis lost it), when the remembered issue is gone (a human deleted it) and before an
issue is opened. Each test counts the issue requests the fake recorded, round by round."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.checkouts import RepoCache
from bot.events import DriftEvent, Event, PushEvent, from_task
from bot.jobs import drift as job
from bot.jobs.context import JobContext, job_context
from bot.jobs.deploy import DEPLOYED, PLANNED, deploy_app, deploy_push
from bot.settings import Settings
from tests.fake_forge import gitlab_hooks, gitstore, hooks
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.github import IssueRec as GitHubIssue
from tests.fake_forge.gitlab import DEVELOPER, FakeGitLab
from tests.fake_forge.server import Recorded
from tests.jobs_support import REPO, configmap
from tests.kube_emulator.fixture import Kubectl
from tests.test_deploy_forges import github_event, gitlab_event

pytestmark = pytest.mark.realcluster

CONFIG = "version: 1\napps:\n  - {name: web, path: web, namespace: web, createNamespace: true}\n"
FILES: dict[str, str | bytes | None] = {".gitops.yaml": CONFIG, "web/a.yaml": configmap("a", "1")}
MARKER = "<!-- gitops-bot:drift -->"
#: Issues opened by people before the bot's: on GitHub the scan lists them all (three pages of
#: 100), on GitLab it asks for the bot's own only.
HUMAN_ISSUES = 250
ISSUE_LIST = re.compile(r"/issues$")
ONE_ISSUE = re.compile(r"/issues/(\d+)$")


@dataclass
class Flavour:
    """One forge: the settings wiring the bot to it, the push of the default branch's head
    (deployed before the drift rounds), the requests the fake recorded, the drift issues
    (number, open) and a human deleting one."""

    settings: Settings
    push: PushEvent
    requests: Callable[[], list[Recorded]]
    drift_issues: Callable[[], list[tuple[int, bool]]]
    delete_issue: Callable[[int], None]


def github_flavour(fake: FakeGitHub, env: dict[str, str]) -> Flavour:
    repo = fake.create_repo(REPO, files=FILES)
    fake.set_permission(REPO, "gitops-bot", "write")
    fake.add_user("alice")
    for _ in range(HUMAN_ISSUES):
        repo.issues[repo.next_number] = GitHubIssue(repo.next_number, "a bug", "text", "alice")
        repo.next_number += 1
    head = repo_head(fake.repo(REPO).git_dir)
    payload = hooks.push_payload(
        fake, repo, ref="refs/heads/main", before="0" * 40, after=head, pusher="alice"
    )
    push = github_event("push", payload)
    assert isinstance(push, PushEvent)
    return Flavour(
        settings=Settings.from_env(
            {**env, "GITHUB_API_URL": fake.url, "GITHUB_TOKEN": fake.bot_token or ""}
        ),
        push=push,
        requests=fake.api_requests,
        drift_issues=lambda: [
            (i.number, i.state == "open") for i in fake.issues(REPO) if i.body.startswith(MARKER)
        ],
        delete_issue=lambda number: fake.delete_issue(REPO, number),
    )


def gitlab_flavour(fake: FakeGitLab, env: dict[str, str]) -> Flavour:
    fake.create_project(REPO, files=FILES)
    fake.add_member(REPO, "gitops-bot", DEVELOPER)
    alice = fake.add_user("alice")
    project = fake.project(REPO)
    head = repo_head(project.git_dir)
    payload = gitlab_hooks.push_payload(
        fake,
        project,
        ref="refs/heads/main",
        before="0" * 40,
        after=head,
        pusher=alice,
        shas=[head],
    )
    push = gitlab_event(fake, "Push Hook", payload)
    assert isinstance(push, PushEvent)
    return Flavour(
        settings=Settings.from_env(
            {**env, "GITLAB_URL": fake.url, "GITLAB_TOKEN": fake.bot_token or ""}
        ),
        push=push,
        requests=fake.api_requests,
        drift_issues=lambda: [
            (i.iid, i.state == "opened")
            for i in fake.issues(REPO)
            if i.description.startswith(MARKER)
        ],
        delete_issue=lambda iid: fake.delete_issue(REPO, iid),
    )


def repo_head(git_dir: Path) -> str:
    head = gitstore.rev(git_dir, "refs/heads/main")
    assert head is not None
    return head


@pytest.fixture(params=["github", "gitlab"])
def flavour(request: pytest.FixtureRequest, tmp_path: Path, kubeconfig: str) -> Flavour:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(f"targets:\n  default:\n    kubeconfig: {kubeconfig}\n")
    env = {
        "GITOPS_DATA_DIR": str(tmp_path / "data"),
        "GITOPS_FORGE_WRITE_INTERVAL": "0",
        "GITOPS_CLUSTERS_FILE": str(clusters),
    }
    if request.param == "github":
        return github_flavour(request.getfixturevalue("fake_github"), env)
    return gitlab_flavour(request.getfixturevalue("fake_gitlab"), env)


@dataclass
class Round:
    """One drift round: what the job said about the issue and the issue requests it made."""

    issue: str
    lists: int  # pages of the issue list (the scan)
    gets: list[int]  # single issues fetched, by number
    writes: int  # issues opened or edited, comments

    @property
    def reads(self) -> int:
        return self.lists + len(self.gets)


class Rounds:
    """Runs the deploy, then drift rounds, as the worker would (a context per job)."""

    def __init__(self, flavour: Flavour, redis_url: str) -> None:
        self.flavour = flavour
        self.redis_url = redis_url
        self.jobs = iter(range(1, 1000))
        self.queued: list[tuple[str, tuple[Any, ...]]] = []

    def context(self, event: Event) -> JobContext:
        settings = self.flavour.settings
        return job_context(
            settings,
            event,
            client=redis.Redis.from_url(self.redis_url),
            repos=RepoCache(settings.data_dir / "repos"),
            job_id=f"job-{next(self.jobs)}",
            retries_left=False,
            enqueue=lambda name, args: self.queued.append((name, tuple(args))),
        )

    def deploy(self) -> None:
        push = self.flavour.push
        assert deploy_push(push, self.context(push)).outcome == PLANNED
        ((name, args),) = self.queued
        assert name == "deploy_app"
        event = from_task(args[0])
        assert deploy_app(event, self.context(event), args[1]).outcome == DEPLOYED
        self.queued.clear()

    def drift(self) -> Round:
        before = len(self.flavour.requests())
        event = DriftEvent(delivery_id="drift-1", repository=self.flavour.push.repository)
        outcome = job.drift_repository(event, self.context(event))
        assert outcome.outcome in (job.DRIFTED, job.NO_DRIFT), outcome
        made = [r for r in self.flavour.requests()[before:] if "/issues" in r.path]
        gets = [
            int(found.group(1))
            for r in made
            if r.method == "GET" and (found := ONE_ISSUE.search(r.path)) is not None
        ]
        return Round(
            issue=outcome.issue,
            lists=sum(1 for r in made if r.method == "GET" and ISSUE_LIST.search(r.path)),
            gets=gets,
            writes=sum(1 for r in made if r.method != "GET"),
        )


def edit_by_hand(kubectl: Kubectl, value: str) -> None:
    kubectl.ok(
        "-n", "web", "patch", "configmap", "a", "--type=merge",
        "-p", f'{{"data":{{"value":"{value}"}}}}',
    )  # fmt: skip


def test_a_round_costs_one_issue_request_or_none(
    flavour: Flavour, redis_url: str, kubectl: Kubectl
) -> None:
    rounds = Rounds(flavour, redis_url)
    rounds.deploy()
    scan = 3 if flavour.push.repository.provider == "github" else 1  # pages, see HUMAN_ISSUES
    # nothing known: the issues are listed once, and "none" remembered
    first = rounds.drift()
    assert (first.issue, first.lists, first.gets) == ("none", scan, [])
    # no drift, "none" known: not one issue request
    second = rounds.drift()
    assert (second.issue, second.reads, second.writes) == ("none", 0, 0)
    # drift: about to open, so listed once more (a number Redis lost must not mean two issues)
    edit_by_hand(kubectl, "by-hand")
    opened = rounds.drift()
    assert (opened.issue, opened.lists, opened.gets, opened.writes) == ("opened", scan, [], 1)
    ((number, is_open),) = flavour.drift_issues()
    assert is_open
    # the same drift: that one issue fetched, nothing written
    same = rounds.drift()
    assert (same.issue, same.lists, same.gets, same.writes) == ("unchanged", 0, [number], 0)
    # the drift changes: fetched and edited, still never listed
    edit_by_hand(kubectl, "by-hand-again")
    edited = rounds.drift()
    assert (edited.issue, edited.lists, edited.gets) == ("edited", 0, [number])
    # drift gone: closed; the closed issue is then fetched alone each round
    edit_by_hand(kubectl, "1")
    assert rounds.drift().issue == "closed"
    quiet = rounds.drift()
    assert (quiet.issue, quiet.lists, quiet.gets, quiet.writes) == ("none", 0, [number], 0)
    assert flavour.drift_issues() == [(number, False)]


def test_an_issue_deleted_by_a_human_is_found_gone_and_opened_anew(
    flavour: Flavour, redis_url: str, kubectl: Kubectl
) -> None:
    rounds = Rounds(flavour, redis_url)
    rounds.deploy()
    edit_by_hand(kubectl, "by-hand")
    assert rounds.drift().issue == "opened"
    ((number, _open),) = flavour.drift_issues()
    flavour.delete_issue(number)  # GitHub answers 410 Gone for it, GitLab 404
    again = rounds.drift()
    assert again.issue == "opened" and again.gets == [number] and again.lists >= 1
    ((renewed, is_open),) = flavour.drift_issues()
    assert renewed != number and is_open
    cheap = rounds.drift()
    assert (cheap.issue, cheap.lists, cheap.gets) == ("unchanged", 0, [renewed])


def test_redis_flushed_costs_one_scan_then_rounds_are_cheap_again(
    flavour: Flavour, redis_url: str, kubectl: Kubectl
) -> None:
    rounds = Rounds(flavour, redis_url)
    rounds.deploy()
    rounds.drift()
    assert rounds.drift().reads == 0
    redis.Redis.from_url(redis_url).flushall()
    rescan = rounds.drift()
    assert rescan.issue == "none" and rescan.lists >= 1 and rescan.gets == []
    assert rounds.drift().reads == 0
    # with an issue open: found by the scan, then fetched alone
    edit_by_hand(kubectl, "by-hand")
    assert rounds.drift().issue == "opened"
    ((number, _open),) = flavour.drift_issues()
    redis.Redis.from_url(redis_url).flushall()
    found = rounds.drift()
    # (GitHub: the scan fetches the issue it found, to tell it from a pull request)
    assert found.issue == "unchanged" and found.lists >= 1 and set(found.gets) <= {number}
    cheap = rounds.drift()
    assert (cheap.issue, cheap.lists, cheap.gets) == ("unchanged", 0, [number])
