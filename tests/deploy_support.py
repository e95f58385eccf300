"""What the deploy job tests share: the jobs of a push run in-process as one deploy worker runs
them (each job a job queues runs after it, first in first out), against a real Redis, the kube
emulator and a :class:`MemoryForge` over a bare git repository (:mod:`tests.jobs_support`).

``Bot.merge(number)`` merges a pull request as a forge does (a merge commit, or a squash: a new
commit whose tree is the merge result's), ``Bot.push(sha)`` delivers the push, ``Bot.drain()``
runs what was queued. Previews queued by a deploy are recorded (``Bot.previews``), not run.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.cluster.targets import Targets
from bot.events import PullRequestEvent, PushEvent, Repository, from_task
from bot.forges.base import PullState
from bot.jobs.context import JobContext
from bot.jobs.deploy import DeployOutcome, deploy_app, deploy_push, resume_deploys
from bot.jobs.preview import PreviewOutcome, run_preview
from bot.settings import Settings
from bot.webhooks.base import IntakeOptions
from bot.webhooks.github import handle_github
from tests.fake_forge import gitstore, hooks
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.memory import MemoryForge
from tests.jobs_support import REPO, Remote, intake_head, make_context, settings_for

EVENT_REPOSITORY = Repository(
    provider="github",
    full_name=REPO,
    id=1,
    default_branch="main",
    clone_url="https://forge.invalid/acme/app.git",
    web_url="https://forge.invalid/acme/app",
    api_url="https://api.github.com",
)
DEPLOY = "gitops/deploy"
SECRET = "s3cret"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: {name}
          image: {image}
"""


def deployment(name: str, image: str = "nginx:1.25") -> str:
    return DEPLOYMENT.format(name=name, image=image)


@dataclass
class Bot:
    """One deploy worker, in-process."""

    remote: Remote
    forge: MemoryForge
    redis_url: str
    tmp_path: Path
    targets: Targets
    settings: Settings | None = None
    queue: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    previews: list[PullRequestEvent] = field(default_factory=list)
    outcomes: list[DeployOutcome] = field(default_factory=list)
    retries_left: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _deliveries: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def context(self, job_id: str | None = None) -> JobContext:
        ctx = make_context(
            self.forge,
            self.redis_url,
            self.tmp_path,
            targets=self.targets,
            settings=self.settings or settings_for(self.tmp_path, GITOPS_DEPLOY_LOCK_TTL="3"),
            job_id=job_id or f"job-{next(self._ids)}",
            retries_left=self.retries_left,
        )
        ctx.enqueue = self._enqueue
        return ctx

    def _enqueue(self, job: str, args: Any) -> None:
        if job == "preview":
            event = from_task(args[0])
            assert isinstance(event, PullRequestEvent)
            self.previews.append(event)
            return
        self.queue.append((job, tuple(args)))

    # -- forge-side actions -------------------------------------------------------------------

    def open(self, number: int, branch: str, files: dict[str, str | bytes | None]) -> str:
        """Open PR ``number`` from a new ``branch`` changing ``files``; returns its head."""
        head = self.remote.commit(branch, files)
        self.remote.publish(self.forge, number, branch)
        return head

    def preview(self, number: int) -> PreviewOutcome:
        ctx = self.context()
        pr = self.forge.pulls[number]
        intake_head(ctx, number, pr.head_sha)
        return run_preview(ctx, number, expected_head=pr.head_sha)

    def merge(self, number: int, *, squash: bool = False) -> str:
        """Merge PR ``number`` into main as the forge's button does; returns the new main."""
        pr = self.forge.pulls[number]
        main = self.remote.head("main")
        merged = gitstore.test_merge(self.remote.path, main, pr.head_sha)
        assert merged is not None, "conflict"
        if squash:
            tree = gitstore.git(self.remote.path, "rev-parse", f"{merged}^{{tree}}").strip()
            merged = gitstore.git(
                self.remote.path, "commit-tree", tree, "-p", main, "-m", f"#{number} (squash)"
            ).strip()
        else:
            # the forge's own merge commit: another message, so another SHA than its merge ref
            tree = gitstore.git(self.remote.path, "rev-parse", f"{merged}^{{tree}}").strip()
            merged = gitstore.git(
                self.remote.path,
                "commit-tree", tree, "-p", main, "-p", pr.head_sha, "-m", f"Merge #{number}",
            ).strip()  # fmt: skip
        gitstore.git(self.remote.path, "update-ref", "refs/heads/main", merged)
        self.forge.pulls[number] = _with_state(pr, PullState.MERGED)
        self.forge.commit_pulls[merged] = [number]
        return merged

    def commit_main(self, files: dict[str, str | bytes | None]) -> str:
        """A direct push to main (no PR)."""
        return self.remote.commit("main", files)

    # -- the bot --------------------------------------------------------------------------------

    def push_event(self, sha: str, before: str = "0" * 40) -> PushEvent:
        return PushEvent(
            delivery_id=f"push-{next(self._deliveries)}",
            repository=EVENT_REPOSITORY,
            ref="refs/heads/main",
            after_sha=sha,
            before_sha=before,
            pusher="alice",
        )

    def push(self, sha: str, *, before: str = "0" * 40, drain: bool = True) -> DeployOutcome:
        outcome = deploy_push(self.push_event(sha, before), self.context())
        self.outcomes.append(outcome)
        if drain:
            self.drain()
        return outcome

    def run_next(self, *, job_id: str | None = None) -> DeployOutcome:
        job, args = self.queue.pop(0)
        assert job == "deploy_app", job
        event = from_task(args[0])
        assert isinstance(event, PushEvent)
        outcome = deploy_app(event, self.context(job_id), args[1])
        self.outcomes.append(outcome)
        return outcome

    def drain(self) -> None:
        while self.queue:
            self.run_next()

    def resume(self) -> None:
        ctx = self.context()
        resume_deploys(ctx.state, ctx.enqueue)
        self.drain()

    # -- reading --------------------------------------------------------------------------------

    def status(self, sha: str) -> tuple[str, str]:
        record = self.forge.latest_status(sha, DEPLOY)
        assert record is not None, f"no {DEPLOY} status on {sha[:12]}"
        return record.state.value, record.description

    def report(self, number: int) -> str:
        bodies = [c.body for c in self.forge.comments_on(number) if "gitops-bot:deploy" in c.body]
        assert len(bodies) == 1, f"{len(bodies)} deploy comments on #{number}"
        return bodies[0]


def _with_state(pr: Any, state: PullState) -> Any:
    from dataclasses import replace

    return replace(pr, state=state)


def push_event(fake: FakeGitHub, before: str, after: str, *, repo: str = REPO) -> PushEvent:
    """The event the intake makes of the fake's push delivery."""
    payload = hooks.push_payload(
        fake, fake.repo(repo), ref="refs/heads/main", before=before, after=after, pusher="alice"
    )
    body = json.dumps(payload).encode()
    outcome = handle_github(
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        },
        body=body,
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert isinstance(outcome.event, PushEvent), outcome.reason
    return outcome.event
