"""The catch-up: work a lost webhook left undone, found by asking the forge, and queued.

GitHub and GitLab do not redeliver a failed delivery by themselves: a bot that was down, or
that answered 503 while Redis was away, would leave a merge undeployed until the next push and
a pull request without its preview until its next commit. Every ``GITOPS_RECONCILE_INTERVAL``
seconds beat queues :func:`catch_up`, which walks the served repositories (:func:`served`:
those seen in queued deliveries, kept in Redis by the intake, and a GitHub App's installations)
within ``GITOPS_REPOSITORIES`` and, for each:

* **the default branch**: when its head is neither the newest head a deploy was queued for
  (the intake records it with every push job, :attr:`bot.state.RepoKey.pushed_key`) nor a
  commit with a deploy record, a deploy of that head is queued — the very job a push delivery
  queues (:func:`bot.jobs.deploy.deploy_push`), whose plan deploys only the apps whose objects
  differ from what their target last deployed, and refuses a commit older than it;
* **each open pull/merge request** (drafts only with ``GITOPS_PREVIEW_DRAFTS``): when its head
  is neither the latest head the intake recorded (a delivery came, its preview is queued, done
  or superseded) nor the head of its last posted preview, a preview is queued.

Jobs go through the intake's own once-per-delivery script (:class:`Intake`) with a delivery
id made of the repository and the head (``catchup:<repo>:<sha>``), so two catch-ups queue one
job for one head, and the script records the head as the webhook path does: a delivery that
arrives late finds its job planned already (the deploy's record, the preview's one-preview-per-
head claim) and does nothing twice. What was queued is counted in
``gitops_catchup_missed_work{job_type}``.

A forge or Redis that does not answer, for one repository or all, is logged; the next round
tries again. Nothing here raises for an outage. A repository the forge answers 404 for (deleted,
or the bot's access removed) is forgotten until a delivery names it again.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bot.errors import ForgeAccessDenied, ForgeNotConfigured, GitopsError
from bot.events import Event, PushEvent, Repository
from bot.forges import Forge, RepositoryFilter
from bot.forges.policy import forge_refusal
from bot.jobs.preview import preview_event
from bot.metrics import count_missed_work
from bot.settings import Settings
from bot.state import JobState, PullKey, RepoKey

log = logging.getLogger("gitops_bot.jobs")

CAUGHT_UP = "caught_up"
"""The ``action`` of a preview event queued by the catch-up."""

DELIVERY_PUSH = "catchup:{repository}:{sha}"
DELIVERY_PULL = "catchup:{repository}#{number}:{sha}"

# outcomes (gitops_jobs_processed_total{job_type="catchup"})
FOUND = "found_missed_work"
NOTHING = "nothing_missed"
PARTIAL = "partial"


@dataclass(frozen=True)
class ServedRepository:
    """A repository the bot serves, as the deliveries (or the App's installation) name it."""

    repository: Repository
    installation_id: int | None = None

    @property
    def key(self) -> str:
        return f"{self.repository.provider}:{self.repository.full_name}"


class Intake(Protocol):
    """Queue a job for ``event`` as a delivery would (once per delivery id); True when it was
    queued, False when that delivery id had queued one already."""

    def __call__(self, event: Event) -> bool: ...


@dataclass
class CatchupOutcome:
    """What one catch-up did: ``deploys`` (``repo@sha``) and ``previews`` (``repo#n``) it
    queued, the repositories it could not check and why."""

    outcome: str
    deploys: list[str] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    checked: int = 0


def served(
    settings: Settings,
    state: JobState,
    *,
    installations: Callable[[], Sequence[ServedRepository]] | None = None,
) -> list[ServedRepository]:
    """The repositories to walk: those seen in queued deliveries and (``installations``, for a
    GitHub App) those the App is installed on, within ``GITOPS_REPOSITORIES`` and on the
    configured forges' hosts, each once. Raises :class:`~bot.state.StateUnavailable`."""
    allowed = RepositoryFilter(settings.repositories)
    found: dict[str, ServedRepository] = {}
    for data in state.served_repositories():
        try:
            repository = Repository(**data["repository"])
        except TypeError:
            continue  # written by another version: the next delivery writes it anew
        installation = data.get("installation_id")
        item = ServedRepository(repository, int(installation) if installation else None)
        found.setdefault(item.key.lower(), item)
    if installations is not None:
        try:
            for item in installations():
                found.setdefault(item.key.lower(), item)
        except GitopsError as exc:
            log.warning("could not list the GitHub App's installations: %s", exc)
    return [
        item
        for _key, item in sorted(found.items())
        if allowed.allows(item.repository.full_name)
        and forge_refusal(settings, item.repository) is None
    ]


def catch_up(
    settings: Settings,
    state: JobState,
    repositories: Sequence[ServedRepository],
    *,
    connect: Callable[[ServedRepository], Forge],
    intake: Intake,
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
) -> CatchupOutcome:
    """Walk ``repositories`` and queue the work no delivery queued (see the module's story)."""
    result = CatchupOutcome(NOTHING)
    for item in repositories:
        name = item.repository.full_name
        try:
            forge = connect(item)
            deploys, previews = catch_up_repository(
                forge, item, state=state, settings=settings, intake=intake
            )
        except ForgeNotConfigured as exc:
            # only a webhook secret for this forge (the Quick start): nothing to ask
            logger.info("catch-up of %s skipped: %s", name, exc, extra={"repository": name})
            continue
        except ForgeAccessDenied as exc:
            if exc.status == 404:  # gone, or no longer visible to the bot: stop asking
                state.forget_repository(item.repository.provider, name)
            reason = str(exc).replace("\n", " ")[:300]
            logger.warning("catch-up of %s not done: %s", name, reason, extra={"repository": name})
            result.failed[name] = reason
            continue
        except GitopsError as exc:
            # a forge outage, a revoked installation, Redis away: the next round tries again
            reason = str(exc).replace("\n", " ")[:300]
            logger.warning(
                "catch-up of %s not done, next round retries: %s",
                name,
                reason,
                extra={"repository": name},
            )
            result.failed[name] = reason
            continue
        except Exception as exc:  # a bug: the others still get their catch-up
            logger.error(
                "catch-up of %s failed with an unexpected %s:\n%s",
                name,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
                extra={"repository": name},
            )
            result.failed[name] = type(exc).__name__
            continue
        result.checked += 1
        result.deploys.extend(what for what, _ in deploys)
        result.previews.extend(what for what, _ in previews)
        for what, delivery in (*deploys, *previews):
            logger.warning(
                "catch-up queued %s: no webhook delivery had",
                what,
                extra={"repository": name, "delivery": delivery},
            )
    count_missed_work("deploy", len(result.deploys))
    count_missed_work("preview", len(result.previews))
    if result.deploys or result.previews:
        result.outcome = FOUND
    elif result.failed:
        result.outcome = PARTIAL
    return result


def catch_up_repository(
    forge: Forge,
    item: ServedRepository,
    *,
    state: JobState,
    settings: Settings,
    intake: Intake,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The catch-up of one repository: (deploys queued, previews queued), each as (what, its
    delivery id). Raises the forge's and Redis's errors."""
    info = forge.repository_info()
    repository = replace(item.repository, default_branch=info.default_branch)
    deploys: list[tuple[str, str]] = []
    head = info.default_branch_sha
    repo = RepoKey(forge.provider, forge.repository)
    if head and state.pushed_head(repo) != head and state.run(repo, head) is None:
        event = PushEvent(
            delivery_id=DELIVERY_PUSH.format(repository=forge.repository, sha=head),
            repository=repository,
            ref=f"refs/heads/{info.default_branch}",
            after_sha=head,
            before_sha="",
            pusher="",
            installation_id=item.installation_id,
        )
        if intake(event):
            deploys.append((f"the deploy of {forge.repository}@{head[:12]}", event.delivery_id))
    previews: list[tuple[str, str]] = []
    for pr in forge.open_pull_requests():
        if pr.draft and not settings.preview_drafts:
            continue
        pull = PullKey(forge.provider, forge.repository, pr.number)
        kept = state.preview_of(pull)
        if state.latest_head(pull) == pr.head_sha or (
            kept is not None and kept.get("head_sha") == pr.head_sha
        ):
            # seen: keep the record alive while the PR stays open (it expires otherwise)
            state.record_head(pull, pr.head_sha)
            continue
        preview = preview_event(
            pr,
            repository=repository,
            delivery_id=DELIVERY_PULL.format(
                repository=forge.repository, number=pr.number, sha=pr.head_sha
            ),
            action=CAUGHT_UP,
            installation_id=item.installation_id,
        )
        if intake(preview):
            previews.append(
                (
                    f"a preview of {forge.repository}#{pr.number}@{pr.head_sha[:12]}",
                    preview.delivery_id,
                )
            )
    return deploys, previews


__all__ = [
    "CAUGHT_UP",
    "CatchupOutcome",
    "Intake",
    "ServedRepository",
    "catch_up",
    "catch_up_repository",
    "served",
]
