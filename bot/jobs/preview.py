"""The preview job: what merging a pull request would change, as one sticky comment and a status.

The story, forge-neutral (GitHub pull requests and GitLab merge requests alike):

1. Read the PR from the forge (the truth now). Closed or merged: nothing. Its head is recorded
   as the latest in Redis if this read is newer than the one stored (:mod:`bot.state`); a job
   whose event names another head, or whose head is no longer the latest, is **superseded** and
   stops. Two deliveries for one head and base run one preview (a claim in Redis); ``/sync``
   always runs.
2. Status ``gitops[/<instance>]/preview`` pending at once.
3. What is previewed is what the merge would deploy: the PR merged into the current head of its
   base branch (:meth:`bot.checkouts.RepoCache.prepare_pull_request`: the forge's merge ref when
   it is up to date, else a local merge). A conflict is reported as such, with the files.
4. :func:`bot.jobs.compare.compare` of the base head and the merge result: the apps the PR's own
   changes touch; each dry-run against its target (live), classified into this PR's changes and
   drift the merge also overwrites, with the workloads that will restart; a repository refused
   by a target's ``repositories`` gets that refusal; a target that cannot be reached gives its
   apps their offline diff, labelled in the comment and the status. A PR from a fork gets the
   offline diff only (no cluster credential used) unless ``GITOPS_LIVE_PREVIEW_FORKS``.
5. A transient error in the result (the cluster answered 5xx/429 for some objects) while the job
   will be retried: nothing is posted, the job is retried.
6. Under the PR's post lock, the head is compared with the latest again; then the sticky comment
   is reconciled (:func:`bot.forges.sticky.reconcile`, in parts within the forge's limit) and the
   status set: success with ``2 apps: +3 ~5 -1``, or failure with the first reason. A PR that
   touches no app gets no comment, only a success status saying so (an earlier comment of the
   bot is edited to say so instead of being left stale).

A job that fails for good leaves a visible trace: status ``error`` with the reason (when the
forge answers) and the log line the task writes with the delivery id.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.checkouts import MergeResult
from bot.errors import GitopsError, TransientError
from bot.events import PullRequestEvent, Repository
from bot.forges import PullRequest, PullState, StatusState
from bot.forges.base import STATUS_DESCRIPTION_LIMIT, shorten
from bot.forges.sticky import part_limit, reconcile
from bot.jobs.compare import Comparison, LiveTargets, compare, open_change
from bot.jobs.context import JobContext, set_status
from bot.jobs.previewed import PreviewRecord, commit_tree
from bot.model import ObjectError, RunResult
from bot.report import comment_parts, escape_md
from bot.state import PullKey, StateUnavailable

# -- outcomes (also the `outcome` label of gitops_jobs_processed_total) ------------------------------

POSTED = "posted"
NOTHING_AFFECTED = "nothing_affected"
CONFLICT = "conflict"
SUPERSEDED = "superseded"
DUPLICATE = "duplicate"
CLOSED = "closed"
DRAFT = "draft"
UNKNOWN_APPS = "unknown_apps"

BASE_DEPLOYED = "base_deployed"
"""The action of the preview events a deploy queues for the open PRs whose base it moved."""

# -- what people read --------------------------------------------------------------------------------

TITLE = "GitOps preview of {head} merged into {base}"
TITLE_INSTANCE = "GitOps preview ({instance}) of {head} merged into {base}"
TITLE_FORK = " (offline: pull request from a fork)"
TITLE_UNREACHABLE = " (offline for {targets}: unreachable)"
PENDING = "Previewing the merge of {head} into {base}…"
PENDING_SYNC = "Re-running the preview (/sync by {author})…"
PENDING_RETRY = "A transient error interrupted the preview; it will be retried: {reason}"
NOTHING = "No app is affected by this change"
NOTHING_UNOWNED = "No app is affected by this change ({count} changed file{s} outside every app)"
NOTHING_NOW = (
    "No app is affected by this pull request any more: at {head} it changes no file an app "
    "reads, so merging it changes nothing in the cluster. (An earlier version of this comment "
    "showed changes of an earlier head.)"
)
CONFLICT_STATUS = "Merge conflict with {base}: {files}"
CONFLICT_COMMENT = (
    "**{head} does not merge cleanly into `{base}`** ({base_sha}): nothing can be previewed "
    "until the conflict is resolved. Conflicting file{s}:\n\n{files}\n\nMerge or rebase the "
    "pull request onto `{base}` and push; the preview runs again."
)
SUPERSEDED_STATUS = "Superseded by {sha} before this preview finished: not previewed"
ERROR_STATUS = "The preview failed: {reason}"
ERROR_GAVE_UP = "The preview failed after retries: {reason}"
INTERNAL = "internal error ({kind}); the bot's log has the details"
TIMED_OUT = "it ran longer than GITOPS_JOB_TIMEOUT allows"
SUMMARY = "{apps} app{s}: {counts}"
OFFLINE_FORK = "offline (fork)"
OFFLINE_TARGETS = "offline: {targets} unreachable"
ERRORS = "{count} error{s}: {first}"
INCOMPLETE = (
    "the cluster answered {count} request{s} with a transient error ({first}); the preview is "
    "retried"
)
FULL_COMMAND = (
    "git fetch origin {base_ref} {head_ref} && gitops-bot preview --repo . --base {base} "
    "--head {head} --merge --format text"
)


class PreviewIncomplete(TransientError):
    """The preview ran but some requests failed transiently; the job is retried rather than
    posting a partial result."""


@dataclass(frozen=True)
class PreviewOutcome:
    """What the preview job did. ``outcome`` is one of the constants above; ``result`` the
    previewed result when one was computed; ``known_apps``/``unknown_apps`` for ``/sync``'s
    reply when app names were wrong."""

    outcome: str
    detail: str = ""
    head_sha: str | None = None
    result: RunResult | None = None
    comments: tuple[int, ...] = ()
    known_apps: tuple[str, ...] = ()
    unknown_apps: tuple[str, ...] = ()
    unreachable: dict[str, str] = field(default_factory=dict)
    #: seconds per step: ``checkout``, ``render``, ``diff``, ``dry_run``, ``post``
    timings: dict[str, float] = field(default_factory=dict)


def preview_event(
    pr: PullRequest,
    *,
    repository: Repository,
    delivery_id: str,
    action: str,
    installation_id: int | None,
) -> PullRequestEvent:
    """The preview of ``pr`` as the bot asks for it itself, without a webhook: after a deploy
    moved its base (``BASE_DEPLOYED``), or in a catch-up of a lost delivery."""
    return PullRequestEvent(
        delivery_id=delivery_id,
        repository=repository,
        number=pr.number,
        head_sha=pr.head_sha,
        base_sha=pr.base_sha,
        base_ref=pr.base_ref,
        head_ref=pr.head_ref,
        action=action,
        author=pr.author,
        draft=pr.draft,
        installation_id=installation_id,
    )


def preview_pull_request(event: PullRequestEvent, ctx: JobContext) -> PreviewOutcome:
    """The job for a PR opened, reopened, synchronized or marked ready: preview the event's
    head unless the PR moved on. A deploy's re-preview (action :data:`BASE_DEPLOYED`) runs
    even when this head was previewed on this base already: the base the forge names for a PR
    (GitLab's diff base, GitHub's base at the last push) does not move with the branch."""
    return run_preview(
        ctx,
        event.number,
        expected_head=event.head_sha,
        dedupe=event.action != BASE_DEPLOYED,
    )


def run_preview(
    ctx: JobContext,
    number: int,
    *,
    expected_head: str | None = None,
    sync_by: str | None = None,
    apps: Sequence[str] = (),
    dedupe: bool = True,
) -> PreviewOutcome:
    """Preview pull request ``number`` as it is now and post the result (see the module's
    story). ``expected_head``: the head the triggering event named (a webhook); ``sync_by``: the
    login whose ``/sync`` asked for it (bypasses the one-preview-per-head claim, as ``dedupe``
    false does); ``apps``:
    names to preview besides the affected apps (``/sync app…``; unknown names return
    ``UNKNOWN_APPS`` before anything is posted).

    Raises :class:`~bot.errors.TransientError` when a retry may help (the caller retries while
    ``ctx.retries_left``), other errors when it will not; either way, once the head is known,
    the status says so (``error``) unless the job will be retried."""
    forge, state = ctx.forge, ctx.state
    pull = PullKey(forge.provider, forge.repository, number)
    seen_at = state.now()  # before the forge read: see bot.state.JobState.record_head
    pr = forge.pull_request(number)
    if pr.state is not PullState.OPEN:
        return PreviewOutcome(CLOSED, f"pull request #{number} is {pr.state.value}")
    if sync_by is None and pr.draft and not ctx.settings.preview_drafts:
        return PreviewOutcome(DRAFT, f"pull request #{number} is a draft", head_sha=pr.head_sha)
    latest = state.record_head(pull, pr.head_sha, at=seen_at)
    if expected_head is not None and pr.head_sha != expected_head:
        return PreviewOutcome(
            SUPERSEDED, f"the head is now {pr.head_sha[:12]}", head_sha=expected_head
        )
    if latest != pr.head_sha:
        return PreviewOutcome(SUPERSEDED, f"the head is now {latest[:12]}", head_sha=pr.head_sha)
    if (
        dedupe
        and sync_by is None
        and not state.claim_preview(pull, head=pr.head_sha, base=pr.base_sha, job_id=ctx.job_id)
    ):
        return PreviewOutcome(
            DUPLICATE, "another job previews this head on this base", head_sha=pr.head_sha
        )
    run = _Run(ctx, pr, pull, sync_by=sync_by)
    try:
        return run.execute(apps)
    except TransientError as exc:
        run.failed(exc, transient=True)
        raise
    except Exception as exc:
        run.failed(exc, transient=False)
        raise


class _Run:
    """One preview of one PR head, from the pending status to the last post."""

    def __init__(self, ctx: JobContext, pr: PullRequest, pull: PullKey, *, sync_by: str | None):
        self.ctx = ctx
        self.forge = ctx.forge
        self.pr = pr
        self.pull = pull
        self.sync_by = sync_by
        self.context = ctx.status_context("preview")
        self.marker = ctx.marker("preview")
        self.pending = False
        self.timings: dict[str, float] = {}

    # -- the story ----------------------------------------------------------------------------

    def execute(self, apps: Sequence[str]) -> PreviewOutcome:
        ctx, pr = self.ctx, self.pr
        if self.sync_by is None:
            self.status(StatusState.PENDING, PENDING.format(head=pr.head_sha[:7], base=pr.base_ref))
        started = time.monotonic()
        repo, merge = ctx.repos.prepare_pull_request(
            self.forge.provider, self.forge.repository, self.forge.git_access(), pr
        )
        self.timings["checkout"] = time.monotonic() - started
        ctx.log.info(
            "previewing head %s merged into %s at %s (%s merge %s)",
            pr.head_sha[:12],
            pr.base_ref,
            merge.base_sha[:12],
            merge.source or "no",
            (merge.sha or "conflict")[:12],
        )
        if self.superseded() is not None:
            return self.stop_superseded()
        if merge.sha is None:
            return self.post_conflict(merge)
        fork_offline = pr.from_fork and not ctx.settings.live_preview_forks
        # the clusters file, not the clusters: forks too get a target's repository refusal
        targets = ctx.targets()
        repository = self.forge.repository

        def refuse(target: str) -> str | None:
            return targets[target].repository_refusal(repository) if target in targets else None

        live = None
        if not fork_offline:
            live = LiveTargets.from_settings(ctx.settings, targets, fallback=True)
        with open_change(repo, merge.base_sha, merge.sha) as change:
            if apps:
                known = change.app_names
                unknown = tuple(name for name in apps if name not in known)
                if unknown:
                    return PreviewOutcome(
                        UNKNOWN_APPS,
                        head_sha=pr.head_sha,
                        known_apps=tuple(sorted(known)),
                        unknown_apps=unknown,
                    )
            if self.sync_by is not None:
                self.status(StatusState.PENDING, PENDING_SYNC.format(author=self.sync_by))
            comparison = compare(change, also=apps, live=live, refuse=refuse)
        self.timings.update(comparison.timings)
        result = comparison.result
        transient = [e for e in _all_errors(result) if e.transient]
        if transient and ctx.retries_left:
            raise PreviewIncomplete(
                INCOMPLETE.format(
                    count=len(transient), s=_s(len(transient)), first=transient[0].message[:200]
                )
            )
        return self.post(comparison, merge, fork_offline=fork_offline, repo=repo)

    def post(
        self, comparison: Comparison, merge: MergeResult, *, fork_offline: bool, repo: Path
    ) -> PreviewOutcome:
        ctx, pr, forge = self.ctx, self.pr, self.forge
        result = comparison.result
        started = time.monotonic()
        with ctx.state.post_lock(self.pull):
            if self.superseded() is not None:
                return self.stop_superseded()
            if not result.apps and not result.errors:
                if self.has_sticky():
                    text = _title_line(ctx, pr) + NOTHING_NOW.format(head=pr.head_sha[:7])
                    reconcile(forge, pr.number, self.marker, [text])
                files = len(result.unowned_files)
                description = NOTHING_UNOWNED.format(count=files, s=_s(files)) if files else NOTHING
                self.status(StatusState.SUCCESS, description)
                self.remember(repo, merge, comparison)
                ctx.log.info("no app affected at %s", pr.head_sha[:12])
                return PreviewOutcome(
                    NOTHING_AFFECTED, description, head_sha=pr.head_sha, result=result
                )
            title = _title(ctx, pr, fork_offline=fork_offline, unreachable=comparison.unreachable)
            command = FULL_COMMAND.format(
                base_ref=shlex.quote(pr.base_ref),
                head_ref=shlex.quote(pr.head_fetch_ref),
                base=merge.base_sha,
                head=pr.head_sha,
            )
            parts = comment_parts(
                result,
                limit=ctx.part_limit or part_limit(forge),
                max_parts=ctx.max_parts,
                full_command=command,
                title=title,
                retried=False,  # posted only when the job will not be retried
            )
            sticky = reconcile(forge, pr.number, self.marker, parts)
            state, description = summarize(
                result, fork_offline=fork_offline, unreachable=comparison.unreachable
            )
            self.status(state, description)
            self.remember(repo, merge, comparison)
        self.timings["post"] = time.monotonic() - started
        ctx.log.info(
            "posted the preview of %s in %d part(s) (%d new, %d edited, %d deleted): %s [%s]",
            pr.head_sha[:12],
            len(parts),
            len(sticky.created),
            len(sticky.edited),
            len(sticky.deleted),
            description,
            ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.timings.items()),
        )
        return PreviewOutcome(
            POSTED,
            description,
            head_sha=pr.head_sha,
            result=result,
            comments=tuple(c.id for c in sticky.comments),
            unreachable=dict(comparison.unreachable),
            timings=dict(self.timings),
        )

    def post_conflict(self, merge: MergeResult) -> PreviewOutcome:
        pr, files = self.pr, merge.conflicts
        listed = "\n".join(f"- <code>{escape_md(name)}</code>" for name in files[:50])
        if len(files) > 50:
            listed += f"\n- …and {len(files) - 50} more"
        text = _title_line(self.ctx, pr) + CONFLICT_COMMENT.format(
            head=pr.head_sha[:7],
            base=escape_md(pr.base_ref),
            base_sha=merge.base_sha[:7],
            s=_s(len(files)),
            files=listed,
        )
        description = CONFLICT_STATUS.format(base=pr.base_ref, files=", ".join(files))
        with self.ctx.state.post_lock(self.pull):
            if self.superseded() is not None:
                return self.stop_superseded()
            reconcile(self.forge, pr.number, self.marker, [text])
            self.status(StatusState.FAILURE, description)
        self.ctx.log.info("merge conflict in %d file(s)", len(files))
        return PreviewOutcome(CONFLICT, description, head_sha=pr.head_sha)

    def remember(self, repo: Path, merge: MergeResult, comparison: Comparison) -> None:
        """Keep what was just posted, for the deploy of the merge to check itself against
        (:mod:`bot.jobs.previewed`). Best effort: without it the deploy says "not previewed"."""
        assert merge.sha is not None
        record = PreviewRecord.of(
            number=self.pr.number,
            head_sha=self.pr.head_sha,
            merge_sha=merge.sha,
            tree=commit_tree(repo, merge.sha),
            result=comparison.result,
            offline_apps=comparison.offline_apps,
        )
        try:
            self.ctx.state.store_preview(self.pull, record.to_json())
        except StateUnavailable as exc:
            self.ctx.log.warning("could not keep the preview for the deploy's check: %s", exc)

    # -- supersession ---------------------------------------------------------------------------

    def superseded(self) -> str | None:
        """The newer head that supersedes this run, or None."""
        latest = self.ctx.state.latest_head(self.pull)
        if latest is not None and latest != self.pr.head_sha:
            return latest
        return None

    def stop_superseded(self) -> PreviewOutcome:
        newer = self.superseded() or "a newer head"
        if self.pending:
            # No pending status left behind on a head that will never be previewed.
            self.status(StatusState.ERROR, SUPERSEDED_STATUS.format(sha=newer[:7]), quiet=True)
        self.ctx.log.info("superseded by %s: stopped before posting", newer[:12])
        return PreviewOutcome(
            SUPERSEDED, f"the head is now {newer[:12]}", head_sha=self.pr.head_sha
        )

    # -- forge writes -------------------------------------------------------------------------

    def status(self, state: StatusState, description: str, *, quiet: bool = False) -> None:
        if set_status(
            self.forge,
            self.pr.head_sha,
            state=state,
            context=self.context,
            description=description,
            log=self.ctx.log,
            quiet=quiet,
        ):
            self.pending = state is StatusState.PENDING or self.pending

    def has_sticky(self) -> bool:
        me = self.forge.identity().login.casefold()
        return any(
            c.author.casefold() == me and self.marker.in_body(c.body)
            for c in self.forge.comments(self.pr.number)
        )

    def failed(self, exc: BaseException, *, transient: bool) -> None:
        """Leave a visible trace of a failure on the head's status (best effort: the forge
        may be what failed)."""
        reason = _reason(exc)
        try:
            if self.superseded() is not None:
                return
        except StateUnavailable:
            pass
        if transient and self.ctx.retries_left:
            self.status(StatusState.PENDING, PENDING_RETRY.format(reason=reason), quiet=True)
            return
        template = ERROR_GAVE_UP if transient else ERROR_STATUS
        self.status(StatusState.ERROR, template.format(reason=reason), quiet=True)


# -- summaries ------------------------------------------------------------------------------------


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _all_errors(result: RunResult) -> list[ObjectError]:
    return [*result.errors, *(e for app in result.apps for e in app.errors)]


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "SoftTimeLimitExceeded":  # the task's time ran out (Celery)
        return TIMED_OUT
    if isinstance(exc, GitopsError):
        return str(exc).replace("\n", " ")[:300]
    return INTERNAL.format(kind=type(exc).__name__)


def summarize(
    result: RunResult, *, fork_offline: bool = False, unreachable: dict[str, str] | None = None
) -> tuple[StatusState, str]:
    """The commit status of a previewed result: success with ``2 apps: +3 ~5 -1`` (and where
    it is offline), or failure adding the first error; at most 140 characters."""
    created = sum(len(app.created) for app in result.apps)
    updated = sum(len(app.updated) for app in result.apps)
    deleted = sum(len(app.deleted) for app in result.apps)
    counts = f"+{created} ~{updated} -{deleted}" if created + updated + deleted else "no changes"
    pieces = [SUMMARY.format(apps=len(result.apps), s=_s(len(result.apps)), counts=counts)]
    if fork_offline:
        pieces.append(OFFLINE_FORK)
    elif unreachable:
        pieces.append(OFFLINE_TARGETS.format(targets=", ".join(sorted(unreachable))))
    errors: list[tuple[str | None, ObjectError]] = [(None, e) for e in result.errors]
    errors += [(app.name, e) for app in result.apps for e in app.errors]
    if not errors:
        return StatusState.SUCCESS, shorten(" · ".join(pieces), STATUS_DESCRIPTION_LIMIT)
    name, first = errors[0]
    where = f"{name}: " if name else ""
    message = " ".join(first.message.split())
    pieces.append(ERRORS.format(count=len(errors), s=_s(len(errors)), first=where + message))
    return StatusState.FAILURE, shorten(" · ".join(pieces), STATUS_DESCRIPTION_LIMIT)


def _title(
    ctx: JobContext, pr: PullRequest, *, fork_offline: bool, unreachable: dict[str, str]
) -> str:
    instance = ctx.settings.instance
    template = TITLE_INSTANCE if instance else TITLE
    title = template.format(instance=instance, head=pr.head_sha[:7], base=pr.base_ref)
    if fork_offline:
        title += TITLE_FORK
    elif unreachable:
        title += TITLE_UNREACHABLE.format(targets=", ".join(sorted(unreachable)))
    return title


def _title_line(ctx: JobContext, pr: PullRequest) -> str:
    return f"### {escape_md(_title(ctx, pr, fork_offline=False, unreachable={}))}\n\n"


__all__ = [
    "CLOSED",
    "CONFLICT",
    "DRAFT",
    "DUPLICATE",
    "NOTHING_AFFECTED",
    "POSTED",
    "SUPERSEDED",
    "UNKNOWN_APPS",
    "PreviewIncomplete",
    "PreviewOutcome",
    "preview_pull_request",
    "run_preview",
    "summarize",
]
