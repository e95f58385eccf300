"""Deploy on merge: a push to the default branch applied app by app, checked, locked, reported.

The story (GitHub and GitLab alike, forge-neutral):

1. **Plan** (:func:`deploy_push`, one job per push, on the ``deploys`` queue). Status
   ``gitops[/<instance>]/deploy`` pending at once on the pushed commit. Under the repository's
   plan lock (pushes are planned one at a time): fetch the commit, render every app with its
   neighbours, and pick the apps to deploy — those whose rendered objects differ from what was
   last deployed to their target. The ApplySet parent records a digest of the objects the bot
   applied (``gitops-bot.io/digest``), so the comparison reads one object per app; a parent
   without one (a deploy by another tool or version) has its commit rendered again instead.
   Every app on a first deploy; never an app removed from ``.gitops.yaml``. An app whose newest
   planned commit is newer than this one is superseded here already; a paused app is parked.
   The plan is stored (:mod:`bot.jobs.deploy_run`) and one job per (target, app) is queued:
   apps deploy in parallel across deploy workers, and an app with ``dependsOn`` is queued only
   when the apps it names deployed healthy in this push (so no worker ever waits for one).
2. **Each app** (:func:`deploy_app`): under the app's deploy lock on its target
   (:meth:`bot.state.JobState.deploy_lock`: one deploy per app at a time, renewed while it
   runs, taken back at once by the same job redelivered), skip it when a newer push planned it
   since (``superseded by <sha>``) or it was paused meanwhile; else render it, refuse a commit
   older than the deployed one, and apply it with prune and the health wait
   (:func:`bot.cluster.runner.run_apply`, the CLI's engine). A transient error (API server
   unreachable, 5xx, 429) retries the app's job while ``GITOPS_JOB_TIMEOUT`` allows; a failed
   app records what is live now. The result is stored; the apps waiting for it are queued (or
   blocked, when it did not deploy healthy).
3. **The report** comes from the job that ends last: the commit status (success only when
   every app applied and is healthy; failure naming the app and the first reason; pending while
   paused) and, when the commit came from a merged PR/MR, one sticky comment there (its own
   marker): each app's fate, the check against the PR's last preview ("as previewed", or
   "Differs from the preview" with each object: :mod:`bot.jobs.previewed`) and the deploy report.
   The check is counted for ``/metrics``. Open PRs whose previewed apps were just deployed are
   re-previewed (their base moved); the others keep their comment.

Redelivered jobs (a worker killed mid-deploy) run again harmlessly: server-side apply makes
the repeat a no-op, the record says which apps already ended, and the report is one sticky
comment. ``gitops-bot apply`` runs :func:`deploy_commit`: the same engine on a local clone.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from bot.errors import ConfigError, GitopsError, PermanentError, TransientError
from bot.events import PushEvent
from bot.forges import PullState, StatusState
from bot.forges.sticky import part_limit, reconcile
from bot.jobs import deploy_report
from bot.jobs.compare import REPOSITORY_REFUSED
from bot.jobs.context import Enqueue, JobContext, set_status
from bot.jobs.deploy_run import (
    AppRun,
    AppState,
    RunRecord,
    app_key,
    app_result_from_json,
    app_result_to_json,
    new_run,
)
from bot.jobs.preview import BASE_DEPLOYED, preview_event
from bot.jobs.previewed import Check, PreviewRecord, changed_objects, commit_tree
from bot.jobs.previewed import compare as compare_preview
from bot.manifests.config import AppSpec, RepoConfig, config_errors, dependency_order, load_config
from bot.manifests.gitrepo import checkout
from bot.manifests.render import RenderedApp, render_apps, render_with_neighbours
from bot.model import AppResult, Manifest, Mode, ObjectError, ObjectRef, RunResult
from bot.settings import Settings
from bot.state import JobState, Pause, PullKey, RepoKey

if TYPE_CHECKING:
    from bot.cluster.apply import IsAncestor, Progress
    from bot.cluster.runner import Clusters
    from bot.cluster.targets import Targets

T = TypeVar("T")

MSG_UNKNOWN_APPS = "unknown app(s): {unknown} (known: {known})"


def git_is_ancestor(repo: Path) -> IsAncestor:
    """``is_ancestor(old, new)`` answered by ``git merge-base --is-ancestor`` in ``repo``; a
    commit git does not know (history rewritten, shallow clone) is not an ancestor."""

    def is_ancestor(old: str, new: str) -> bool:
        proc = subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", old, new],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    return is_ancestor


def deploy_commit(
    repo: Path,
    ref: str,
    *,
    settings: Settings,
    kubeconfig: Path | None = None,
    context: str | None = None,
    apps: Sequence[str] = (),
    dry_run: bool = False,
    wait: bool = True,
    progress: Callable[[str], Progress] | None = None,
) -> RunResult:
    """Render the apps (all, or ``apps``) of commit ``ref`` and deploy them (Mode.DEPLOY).

    ``kubeconfig``/``context`` send every app to that one cluster; otherwise each goes to its
    target from ``settings.clusters_file``. A broken ``.gitops.yaml`` or an unknown app name
    ends in the result's errors with nothing applied. Raises :class:`bot.manifests.GitError`
    for an unknown ref and :class:`bot.cluster.TargetError` for unusable targets."""
    from bot.cluster.applyset import DEFAULT_TOOLING
    from bot.cluster.owners import Declarations
    from bot.cluster.runner import Clusters, run_apply
    from bot.cluster.targets import Targets
    from bot.errors import ConfigError
    from bot.manifests import (
        checkout,
        config_errors,
        load_config,
        render_with_neighbours,
        resolve_commit,
    )

    commit = resolve_commit(repo, ref)
    override: str | None = None
    if kubeconfig is not None or context is not None:
        override = context or "kubeconfig"
        targets = Targets.single(override, kubeconfig=kubeconfig, context=context)
    else:
        targets = Targets.from_settings(settings.clusters_file)
    failed = RunResult(mode=Mode.DEPLOY, head=commit, dry_run=dry_run)
    with checkout(repo, commit) as root:
        try:
            config = load_config(root)
        except ConfigError as exc:
            failed.errors.extend(config_errors(exc))
            return failed
        unknown = [name for name in dict.fromkeys(apps) if config.app(name) is None]
        if unknown:
            known = ", ".join(sorted(config.names)) or "none"
            message = MSG_UNKNOWN_APPS.format(unknown=", ".join(unknown), known=known)
            failed.errors.append(ObjectError(message, reason="UnknownApp"))
            return failed
        rendering = render_with_neighbours(
            root, config, apps=list(apps) or None, one_target=override
        )
    rendered = rendering.apps
    # who declares what at this commit, from every app on the targets (not only those sent)
    declared = Declarations.of(rendering.everything, specs=config.apps, one_target=override)
    with Clusters(targets, concurrency=settings.kube_concurrency) as clusters:
        result = run_apply(
            rendered,
            clusters,
            commit=commit,
            field_manager=settings.field_manager,
            dry_run=dry_run,
            progress=progress,
            is_ancestor=git_is_ancestor(repo),
            target_override=override,
            wait=wait,
            tooling=settings.applyset_tooling or DEFAULT_TOOLING,
            declared=declared,
            # what the deploy job compares the next push with (None: a dry run records nothing)
            digests={r.spec.name: app_digest(r.spec, r.manifests) for r in rendered},
        )
    result.dry_run = dry_run
    return result


# == the deploy job ==================================================================================

# -- outcomes (the `outcome` label of gitops_jobs_processed_total) ----------------------------------

PLANNED = "planned"
NOTHING_TO_DEPLOY = "nothing_to_deploy"
CONFIG_ERROR = "config_error"
DUPLICATE = "duplicate"
EXPIRED = "expired"
DEPLOYED = "deployed"
FAILED = "failed"
SUPERSEDED = "superseded"
PAUSED = "paused"

# -- what people read -----------------------------------------------------------------------------

MSG_REFUSED = "{refusal}"
MSG_LIVE_NOW_MIXED = (
    "live now on {target}: the objects of {sha} listed as applied above; the rest as deployed "
    "from {live} ({at})"
)
MSG_LIVE_NOW_SAME = "live now on {target}: {sha} is applied, but not every object is healthy"
MSG_LIVE_NOW_NONE = (
    "live now on {target}: the objects of {sha} listed as applied above (the app had not been "
    "deployed before)"
)
MSG_LIVE_NOW_UNKNOWN = "live now on {target}: unknown (the cluster could not be reached)"
MSG_UNKNOWN_APP = "app {name!r} is not in .gitops.yaml at {sha}"
MSG_INTERNAL = "internal error ({kind}); the bot's log has the details"
MSG_TIMED_OUT = "it ran longer than GITOPS_JOB_TIMEOUT allows"
MSG_GAVE_UP = "gave up after retries: {reason}"
MSG_PAUSED = "{reason}; paused by {by} for {scope}"
MSG_PAUSED_NO_REASON = "paused by {by} for {scope}"
MSG_EXPIRED = "the deploy record of {sha} is gone (older than GITOPS_DELIVERY_TTL)"

DIGEST_VERSION = 1


class DeployIncomplete(TransientError):
    """The app's apply met transient errors (the cluster answered 5xx/429, or could not be
    reached); its job is retried rather than reporting a partial deploy."""


@dataclass(frozen=True)
class DeployOutcome:
    """What one deploy job did: ``outcome`` is one of the constants above; ``timings`` seconds
    per step (``checkout``, ``render``, ``plan``, ``apply``, ``health``, ``report``)."""

    outcome: str
    detail: str = ""
    queued: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def app_digest(spec: AppSpec, manifests: Sequence[Manifest]) -> str:
    """A digest of what deploying the app applies: its rendered objects (in a stable order,
    keys sorted) and the settings that change how they are applied. Equal digests: deploying
    again would change nothing the bot manages."""
    head = {
        "v": DIGEST_VERSION,
        "target": spec.target,
        "namespace": spec.namespace,
        "createNamespace": spec.create_namespace,
        "prune": spec.prune,
        "forceConflicts": spec.force_conflicts,
    }
    digest = hashlib.sha256(orjson.dumps(head, option=orjson.OPT_SORT_KEYS))
    for obj in sorted((m.obj for m in manifests), key=lambda o: ObjectRef.of(o).key):
        digest.update(b"\n")
        digest.update(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str))
    return "sha256:" + digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "SoftTimeLimitExceeded":  # the task's time ran out (Celery)
        return MSG_TIMED_OUT
    if isinstance(exc, GitopsError):
        return str(exc).replace("\n", " ")[:300]
    return MSG_INTERNAL.format(kind=type(exc).__name__)


def _pause_text(found: Pause) -> str:
    if found.reason:
        return MSG_PAUSED.format(reason=found.reason, by=found.by, scope=found.scope)
    return MSG_PAUSED_NO_REASON.format(by=found.by, scope=found.scope)


def _default_branch(event: PushEvent) -> str:
    return event.ref.removeprefix("refs/heads/")


class _Push:
    """What the jobs of one push share: its identity, its record's accessors, the report."""

    def __init__(self, event: PushEvent, ctx: JobContext) -> None:
        self.event = event
        self.ctx = ctx
        self.forge = ctx.forge
        self.sha = event.after_sha
        self.repo = RepoKey(ctx.forge.provider, ctx.forge.repository)
        self.context = ctx.status_context("deploy")
        self.marker = ctx.marker("deploy")
        self.timings: dict[str, float] = {}
        #: the plan set the pending status before planning (no pause could hold an app)
        self.said_pending = True

    # -- the record -----------------------------------------------------------------------------

    def record(self) -> RunRecord | None:
        data = self.ctx.state.run(self.repo, self.sha)
        return RunRecord.from_json(data) if data is not None else None

    def change(self, fn: Callable[[RunRecord], T]) -> tuple[RunRecord, T]:
        """Apply ``fn`` to the record in one transaction; returns the record as stored."""

        def step(data: dict[str, Any] | None) -> tuple[dict[str, Any] | None, tuple[RunRecord, T]]:
            if data is None:
                raise DeployRecordGone(MSG_EXPIRED.format(sha=self.sha[:12]))
            run = RunRecord.from_json(data)
            value = fn(run)
            return run.to_json(), (run, value)

        return self.ctx.state.update_run(self.repo, self.sha, step, parked=_is_parked)

    def queue(self, keys: Sequence[str]) -> None:
        """Queue the app jobs of ``keys`` (a duplicate is harmless: it finds its app ended)."""
        payload = self.event.to_task()
        for key in keys:
            self.ctx.enqueue("deploy_app", (payload, key))
        if keys:
            self.ctx.log.info("queued the deploy of %s", ", ".join(keys))

    def status(self, state: StatusState, description: str, *, quiet: bool = False) -> None:
        set_status(
            self.forge,
            self.sha,
            state=state,
            context=self.context,
            description=description,
            log=self.ctx.log,
            quiet=quiet,
        )

    # -- the report -----------------------------------------------------------------------------

    def report(self, run: RunRecord) -> None:
        """Post the report of a settled run (status; comment on its PR), count the check
        against the preview once nothing is paused, and re-preview the open PRs whose apps
        were just deployed. Idempotent: a repeat edits nothing (sticky comment, same status)."""
        ctx = self.ctx
        started = time.monotonic()
        results = {
            key: app_result_from_json(data)
            for key, data in ctx.state.results(self.repo, self.sha).items()
        }
        check = self._check(run, results)
        state, description = deploy_report.status(run, results, check)
        # a PR whose merge deploys nothing gets no comment (as its preview got none), unless
        # its preview showed changes: then the comment says how the deploy differs
        quiet = not run.apps and not run.errors and (check is None or check.as_previewed)
        if run.pr is not None and not quiet:
            parts = deploy_report.comment(
                run,
                results,
                check,
                instance=ctx.settings.instance,
                limit=ctx.part_limit or part_limit(self.forge),
                max_parts=ctx.max_parts,
            )
            with ctx.state.post_lock(PullKey(self.repo.provider, self.repo.repository, run.pr)):
                reconcile(self.forge, run.pr, self.marker, parts)
                self.status(state, description)
        else:
            self.status(state, description)
        ctx.log.info("reported the deploy of %s: %s", self.sha[:12], description)
        deployed = sorted(
            {
                a.key
                for a in run.apps.values()
                if a.state in (AppState.DEPLOYED, AppState.FAILED)
                and a.key in results
                and results[a.key].has_changes
            }
            - set(run.repreviewed)
        )
        outcome = _check_outcome(run, check)

        def mark(record: RunRecord) -> bool:
            record.reported = max(record.reported, run.generation)
            record.repreviewed = sorted({*record.repreviewed, *deployed})
            count = not record.parked and not record.counted
            record.counted = record.counted or count
            return count

        ctx.log.info("the deploy of %s checked against its preview: %s", self.sha[:12], outcome)
        _, count = self.change(mark)
        if count and outcome == "differed":
            ctx.state.count_differed(self.repo.repository)
        if deployed:
            self._repreview({key.split("/", 1)[1] for key in deployed})
        self.timings["report"] = time.monotonic() - started

    def _check(self, run: RunRecord, results: Mapping[str, AppResult]) -> Check | None:
        if run.pr is None:
            return None
        data = self.ctx.state.preview_of(PullKey(self.repo.provider, self.repo.repository, run.pr))
        if data is None:
            return None
        record = PreviewRecord.from_json(data)
        forge = self.forge
        try:  # the job reporting may run where the commit was not fetched yet
            repo_path = self.ctx.repos.fetch_commits(
                forge.provider, forge.repository, forge.git_access(), [self.sha]
            )
        except GitopsError:
            repo_path = self.ctx.repos.path(forge.provider, forge.repository)
        elsewhere = [
            a.name for a in run.apps.values() if a.state in (AppState.SUPERSEDED, AppState.PAUSED)
        ]
        applied = [
            results[a.key]
            for a in run.apps.values()
            if a.state in (AppState.DEPLOYED, AppState.FAILED) and a.key in results
        ]
        return compare_preview(
            record,
            changed_objects(applied),
            tree=commit_tree(repo_path, self.sha),
            elsewhere=elsewhere,
        )

    def _repreview(self, apps: set[str]) -> None:
        """Queue a preview of each open PR onto the default branch whose last preview showed one
        of ``apps`` (or that has none kept): the base it was previewed against just moved."""
        ctx = self.ctx
        branch = _default_branch(self.event)
        queued = []
        for pr in self.forge.open_pull_requests():
            if pr.base_ref != branch:
                continue
            kept = ctx.state.preview_of(
                PullKey(self.repo.provider, self.repo.repository, pr.number)
            )
            if kept is not None and not apps & set(PreviewRecord.from_json(kept).apps):
                continue
            event = preview_event(
                pr,
                repository=self.event.repository,
                delivery_id=f"deploy-{self.sha[:12]}-{pr.number}",
                action=BASE_DEPLOYED,
                installation_id=self.event.installation_id,
            )
            ctx.enqueue("preview", (event.to_task(),))
            queued.append(pr.number)
        if queued:
            ctx.log.info(
                "re-previewing %s: their base moved with this deploy",
                ", ".join(f"#{n}" for n in queued),
            )

    def report_if_due(self, run: RunRecord) -> bool:
        """Report the run when it is settled and this generation was not reported yet."""
        if run.settled and run.reported < run.generation:
            self.report(run)
            return True
        return False


class DeployRecordGone(PermanentError):
    """The record of a push expired (or Redis lost it) before its last app job ran."""


def _is_parked(data: dict[str, Any]) -> bool:
    return RunRecord.from_json(data).parked


def _check_outcome(run: RunRecord, check: Check | None) -> str:
    """How the deploy compares with the preview: ``as_previewed``, ``differed``,
    ``not_previewed`` (its PR has none kept) or ``no_pull_request`` (logged; ``differed`` is
    counted in ``gitops_merges_differed_from_preview_total``)."""
    if run.pr is None:
        return "no_pull_request"
    if check is None:
        return "not_previewed"
    return "as_previewed" if check.as_previewed else "differed"


# -- 1. the plan ------------------------------------------------------------------------------------


def deploy_push(event: PushEvent, ctx: JobContext) -> DeployOutcome:
    """The job of a push to the default branch: plan the deploy of ``event.after_sha`` and
    queue one job per app (see the module's story). Raises :class:`TransientError` when a
    retry may help (the caller retries while ``ctx.retries_left``)."""
    push = _Push(event, ctx)
    existing = push.record()
    if existing is not None and not _maybe_new_push(existing, event):
        return _replan(push, existing)
    try:
        return _plan(push)
    except TransientError as exc:
        if ctx.retries_left:
            push.status(
                StatusState.PENDING,
                deploy_report.PENDING_RETRY.format(reason=_reason(exc)),
                quiet=True,
            )
        else:
            push.status(
                StatusState.ERROR,
                deploy_report.ERROR_STATUS.format(reason=MSG_GAVE_UP.format(reason=_reason(exc))),
                quiet=True,
            )
        raise
    except Exception as exc:
        push.status(
            StatusState.ERROR, deploy_report.ERROR_STATUS.format(reason=_reason(exc)), quiet=True
        )
        raise


def _maybe_new_push(run: RunRecord, event: PushEvent) -> bool:
    """Whether ``event`` may push the commit of ``run`` anew rather than be the same push again
    (its job redelivered, a second delivery of it): another delivery, once the earlier deploy
    of the commit is over. :func:`_forced` decides, with git."""
    return run.event.get("delivery_id") != event.delivery_id and run.settled


def _forced(repo_path: Path, push: _Push) -> bool:
    """Whether the push moved the branch back or sideways (``before`` is not an ancestor of the
    pushed commit: a force-push), so that a commit deployed before is pushed anew. A push whose
    ``before`` is unknown (all zeros: a new branch, or a job queued by other means than a
    webhook) is not."""
    before = push.event.before_sha
    if not before or set(before) == {"0"} or before == push.sha:
        return False
    _have(push, before)
    return not git_is_ancestor(repo_path)(before, push.sha)


def _replan(push: _Push, run: RunRecord) -> DeployOutcome:
    """A second job for a push already planned (a redelivered plan job, or the delivery
    twice): queue again the apps that may not have been queued, report when due."""
    queued = [a.key for a in run.in_state(AppState.QUEUED)]
    push.queue(queued)
    push.report_if_due(run)
    return DeployOutcome(DUPLICATE, "already planned", queued=tuple(queued))


@dataclass
class _Candidate:
    """One app of the pushed commit, while planning."""

    spec: AppSpec
    rendered: RenderedApp
    digest: str | None = None
    error: list[ObjectError] = field(default_factory=list)
    parent_commit: str | None = None
    parent_digest: str | None = None
    unreadable: bool = False


def _plan(push: _Push) -> DeployOutcome:
    from bot.cluster.errors import KubeError
    from bot.cluster.runner import Clusters

    ctx, forge, sha = push.ctx, push.forge, push.sha
    started = time.monotonic()
    repo_path = ctx.repos.fetch_commits(forge.provider, forge.repository, forge.git_access(), [sha])
    push.timings["checkout"] = time.monotonic() - started
    pr = _pull_request_of(push)
    with ctx.state.plan_lock(push.repo, holder=ctx.job_id):
        existing = push.record()
        if existing is not None:
            if not (_maybe_new_push(existing, push.event) and _forced(repo_path, push)):
                return _replan(push, existing)
            ctx.state.clear_results(push.repo, sha)  # of the earlier push of this commit
        # Pending at once, unless a pause may hold an app: GitLab cannot move a running
        # status to another running one, so the first status must then already say "paused".
        said_pending = not ctx.state.may_be_paused(push.repo.repository)
        if said_pending:
            push.status(StatusState.PENDING, deploy_report.PENDING.format(sha=sha[:7]))
        push.said_pending = said_pending
        seq = ctx.state.now()
        rendered_at = time.monotonic()
        with checkout(repo_path, sha) as root:
            try:
                config = load_config(root)
            except ConfigError as exc:
                run = new_run(
                    provider=push.repo.provider,
                    repository=push.repo.repository,
                    sha=sha,
                    event=push.event.to_task(),
                    seq=seq,
                    apps=(),
                    pr=pr,
                )
                run.errors = [e.to_json() for e in config_errors(exc)]
                return _store_plan(push, run, CONFIG_ERROR)
            rendering = render_with_neighbours(root, config)
        push.timings["render"] = time.monotonic() - rendered_at
        planned_at = time.monotonic()
        candidates = [_Candidate(spec=r.spec, rendered=r) for r in rendering.apps]
        try:
            targets = ctx.targets()
        except KubeError as exc:
            # a broken clusters file: every app fails with its message, nothing is sent
            for c in candidates:
                c.error.append(exc.to_object_error())
            targets = None
        if targets is not None:
            with Clusters(targets, concurrency=ctx.settings.kube_concurrency) as clusters:
                for c in candidates:
                    _read_candidate(push, c, targets, clusters)
            _fallback_digests(push, repo_path, candidates)
        apps, unchanged = _choose(push, repo_path, config, candidates)
        run = new_run(
            provider=push.repo.provider,
            repository=push.repo.repository,
            sha=sha,
            event=push.event.to_task(),
            seq=seq,
            apps=apps,
            pr=pr,
            unchanged=unchanged,
        )
        for c in candidates:
            key = app_key(c.spec.target, c.spec.name)
            if key in run.apps and run.apps[key].state is AppState.FAILED:
                failed = AppResult(name=c.spec.name, target=c.spec.target, commit=sha)
                failed.errors = list(c.error)
                failed.notes = list(c.rendered.notes)
                ctx.state.store_result(push.repo, sha, key, app_result_to_json(failed))
        push.timings["plan"] = time.monotonic() - planned_at
        return _store_plan(push, run, PLANNED if run.apps else NOTHING_TO_DEPLOY)


def _store_plan(push: _Push, run: RunRecord, outcome: str) -> DeployOutcome:
    def create(data: dict[str, Any] | None) -> tuple[dict[str, Any] | None, RunRecord]:
        if data is not None and not _maybe_new_push(RunRecord.from_json(data), push.event):
            return None, RunRecord.from_json(data)  # planned meanwhile (not under this lock)
        return run.to_json(), run

    stored = push.ctx.state.update_run(push.repo, push.sha, create, parked=_is_parked)
    queued = [a.key for a in stored.in_state(AppState.QUEUED)]
    paused = [a.name for a in stored.in_state(AppState.PAUSED)]
    if not push.said_pending and not stored.settled:
        pending = deploy_report.PENDING.format(sha=push.sha[:7])
        if paused:
            pending += deploy_report.PENDING_PAUSED.format(apps=", ".join(paused))
        push.status(StatusState.PENDING, pending)
    push.ctx.log.info(
        "planned the deploy of %s: %s", push.sha[:12], _plan_summary(stored) or "nothing to deploy"
    )
    push.queue(queued)
    push.report_if_due(stored)
    return DeployOutcome(
        outcome, _plan_summary(stored), queued=tuple(queued), timings=dict(push.timings)
    )


def _plan_summary(run: RunRecord) -> str:
    by_state: dict[str, list[str]] = {}
    for app in run.apps.values():
        by_state.setdefault(app.state.value, []).append(app.name)
    return "; ".join(f"{state}: {', '.join(names)}" for state, names in by_state.items())


def _pull_request_of(push: _Push) -> int | None:
    """The merged PR/MR onto the default branch the pushed commit came from, if any."""
    branch = _default_branch(push.event)
    for pr in push.forge.pull_requests_for_commit(push.sha):
        if pr.state is PullState.MERGED and pr.base_ref == branch:
            return pr.number
    return None


def _read_candidate(push: _Push, c: _Candidate, targets: Targets, clusters: Clusters) -> None:
    """Render errors, refusals, the digest and what the app's parent says was deployed."""
    from bot.cluster.apply import deployed_commit
    from bot.cluster.applyset import DEFAULT_TOOLING
    from bot.cluster.errors import KubeError
    from bot.cluster.plan import app_namespace

    spec = c.spec
    if c.rendered.errors:
        c.error.extend(c.rendered.errors)
        return
    if spec.target not in targets:
        c.error.append(ObjectError(f"unknown target {spec.target!r}", reason="UnknownTarget"))
        return
    refusal = targets[spec.target].repository_refusal(push.forge.repository)
    if refusal is not None:
        c.error.append(ObjectError(MSG_REFUSED.format(refusal=refusal), reason=REPOSITORY_REFUSED))
        return
    c.digest = app_digest(spec, c.rendered.manifests)
    try:
        deployed = deployed_commit(
            clusters.get(spec.target),
            spec.name,
            namespace=app_namespace(spec),
            tooling=push.ctx.settings.applyset_tooling or DEFAULT_TOOLING,
        )
    except KubeError as exc:
        # cannot tell what is deployed: deploy it (its job retries while the target is down)
        push.ctx.log.warning("cannot read what is deployed of %s: %s", spec.name, exc)
        c.unreadable = True
        return
    if deployed is not None:
        c.parent_commit, c.parent_digest = deployed.commit, deployed.digest


def _fallback_digests(push: _Push, repo_path: Path, candidates: Sequence[_Candidate]) -> None:
    """For parents recording a commit but no digest (deployed by ``gitops-bot apply`` of an
    older version, or by hand): render that commit's app to compare. An unknown commit (history
    rewritten) leaves the digest unknown: the app deploys."""
    ctx, forge = push.ctx, push.forge
    wanted = {
        c.parent_commit
        for c in candidates
        if c.digest and c.parent_commit and not c.parent_digest and c.parent_commit != push.sha
    }
    for commit in sorted(c for c in wanted if c):
        try:
            ctx.repos.fetch_commits(forge.provider, forge.repository, forge.git_access(), [commit])
            with checkout(repo_path, commit) as root:
                config = load_config(root)
                names = [
                    c.spec.name
                    for c in candidates
                    if c.parent_commit == commit and config.app(c.spec.name) is not None
                ]
                for old in render_apps(root, config, apps=names, check_shared=False):
                    for c in candidates:
                        same = c.spec.name == old.spec.name and c.parent_commit == commit
                        if same and not old.errors:
                            c.parent_digest = app_digest(old.spec, old.manifests)
        except GitopsError as exc:
            ctx.log.info("cannot render the deployed commit %s: %s", commit[:12], exc)
    for c in candidates:
        if c.parent_commit == push.sha and not c.parent_digest:
            c.parent_digest = c.digest  # this very commit is deployed already


def _choose(
    push: _Push, repo_path: Path, config: RepoConfig, candidates: Sequence[_Candidate]
) -> tuple[list[AppRun], list[str]]:
    """The apps of the run (in dependency order) and the names of the unchanged ones, with the
    newest planned commit per app recorded (the caller holds the plan lock)."""
    ctx, sha = push.ctx, push.sha
    is_ancestor = git_is_ancestor(repo_path)
    targets_of = {s.name: s.target for s in config.apps}
    branch_head: str | None = None
    runs: dict[str, AppRun] = {}
    unchanged: list[str] = []
    for c in candidates:
        spec = c.spec
        app = AppRun(
            name=spec.name,
            target=spec.target,
            depends=[app_key(targets_of[d], d) for d in spec.depends_on if d in targets_of],
        )
        if c.error:
            app.state = AppState.FAILED
            app.detail = deploy_report.failure_reason(
                AppResult(name=spec.name, target=spec.target, errors=c.error)
            )
            runs[spec.name] = app
            continue
        latest, done = ctx.state.app_commits(push.repo, spec.target, spec.name)
        newer = None
        if latest is not None and latest != sha:
            _have(push, latest)
            newer = latest if is_ancestor(sha, latest) else None
        pending = latest is not None and latest != sha and latest != done
        if not (c.unreadable or c.digest != c.parent_digest or pending):
            if newer is None:
                ctx.state.plan_commit(push.repo, spec.target, spec.name, sha)
                ctx.state.commit_done(push.repo, spec.target, spec.name, sha)
            unchanged.append(spec.name)
            continue
        if newer is not None:
            if branch_head is None:
                branch_head = _branch_head(push)
            if branch_head == sha:
                # the branch itself went back (a force-push): never applied
                from bot.cluster.errors import OLDER_COMMIT

                app.state = AppState.FAILED
                app.detail = OLDER_COMMIT.format(commit=sha[:12], live=newer[:12])
                c.error.append(ObjectError(app.detail, reason="OlderCommit"))
            else:  # a late delivery: a newer commit is planned (or deployed) for this app
                app.state = AppState.SUPERSEDED
                app.detail = deploy_report.SUPERSEDED_DETAIL.format(sha=newer[:7])
            runs[spec.name] = app
            continue
        ctx.state.plan_commit(push.repo, spec.target, spec.name, sha)
        paused = ctx.state.pause_of(push.repo.repository, spec.name)
        if paused is not None:
            app.state, app.detail, app.paused_self = AppState.PAUSED, _pause_text(paused), True
        runs[spec.name] = app
    order = dependency_order(config, list(runs))
    return [runs[name] for name in order], unchanged


def _branch_head(push: _Push) -> str:
    """Where the default branch points on the forge now."""
    forge = push.forge
    _, head = push.ctx.repos.fetch_branch(
        forge.provider, forge.repository, forge.git_access(), _default_branch(push.event)
    )
    return head


def _have(push: _Push, sha: str) -> None:
    """Make sure the cache holds ``sha`` (for ancestry checks); an unknown one is left out."""
    forge = push.forge
    try:
        push.ctx.repos.fetch_commits(forge.provider, forge.repository, forge.git_access(), [sha])
    except GitopsError as exc:
        push.ctx.log.info("cannot fetch %s: %s", sha[:12], exc)


# -- 2. each app ------------------------------------------------------------------------------------


def deploy_app(event: PushEvent, ctx: JobContext, key: str) -> DeployOutcome:
    """The job of one app (``<target>/<app>``) of a planned push: deploy it under its lock,
    store its result, queue the apps waiting for it, and report the push when it is the last
    to end (see the module's story)."""
    push = _Push(event, ctx)
    run = push.record()
    if run is None:
        ctx.log.warning(MSG_EXPIRED.format(sha=push.sha[:12]))
        return DeployOutcome(EXPIRED, MSG_EXPIRED.format(sha=push.sha[:12]))
    app = run.apps.get(key)
    if app is None or app.state not in (AppState.QUEUED, AppState.RUNNING):
        push.report_if_due(run)  # a redelivered last job that died before reporting
        return DeployOutcome(DUPLICATE, f"{key} is {app.state.value if app else 'not planned'}")
    try:
        with ctx.state.deploy_lock(push.repo, app.target, app.name, holder=ctx.job_id):
            state, detail, result = _deploy_locked(push, key)
    except TransientError as exc:
        if ctx.retries_left:
            raise
        state, detail, result = AppState.FAILED, MSG_GAVE_UP.format(reason=_reason(exc)), None
        ctx.log.error("deploy of %s gave up: %s", key, exc)
    except Exception as exc:
        if not isinstance(exc, GitopsError):
            # The stack, not the message: a message may quote a value from a manifest.
            ctx.log.error(
                "unexpected %s deploying %s:\n%s",
                type(exc).__name__,
                key,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
        state, detail, result = AppState.FAILED, _reason(exc), None
    if state is None:
        return DeployOutcome(DUPLICATE, f"{key} already ended")
    return _end_app(push, key, state, detail, result)


def _deploy_locked(push: _Push, key: str) -> tuple[AppState | None, str, AppResult | None]:
    """Under the app's lock: (the state it ended in, why, its result); (None, …) when the app
    already ended (a duplicate job)."""
    ctx, sha = push.ctx, push.sha
    _, started = push.change(lambda r: r.start(key, ctx.job_id))
    if not started:
        return None, "", None
    run = push.record()
    assert run is not None
    app = run.apps[key]
    latest, _done = ctx.state.app_commits(push.repo, app.target, app.name)
    if latest is not None and latest != sha:
        # plans only ever record a newer commit: this deploy is superseded
        return AppState.SUPERSEDED, deploy_report.SUPERSEDED_DETAIL.format(sha=latest[:7]), None
    paused = ctx.state.pause_of(push.repo.repository, app.name)
    if paused is not None:
        return AppState.PAUSED, _pause_text(paused), None
    result = _apply(push, app)
    if any(e.transient for e in result.errors) and ctx.retries_left:
        first = next(e for e in result.errors if e.transient)
        raise DeployIncomplete(f"{app.name}: {first.message[:300]}")
    if result.ok:
        return AppState.DEPLOYED, "", result
    return AppState.FAILED, deploy_report.failure_reason(result), result


def _apply(push: _Push, app: AppRun) -> AppResult:
    """Render the app at the pushed commit (with its neighbours on its target: objects moving
    between apps) and deploy it: apply, prune, health wait."""
    from bot.cluster.apply import deployed_commit
    from bot.cluster.applyset import DEFAULT_TOOLING
    from bot.cluster.owners import Declarations
    from bot.cluster.plan import app_namespace
    from bot.cluster.runner import Clusters, run_apply

    ctx, forge, sha = push.ctx, push.forge, push.sha
    started = time.monotonic()
    repo_path = ctx.repos.fetch_commits(forge.provider, forge.repository, forge.git_access(), [sha])
    push.timings["checkout"] = time.monotonic() - started
    rendered_at = time.monotonic()
    with checkout(repo_path, sha) as root:
        try:
            config = load_config(root)
        except ConfigError as exc:
            failed = AppResult(name=app.name, target=app.target, commit=sha)
            failed.errors = config_errors(exc)
            return failed
        if config.app(app.name) is None:
            failed = AppResult(name=app.name, target=app.target, commit=sha)
            failed.errors = [ObjectError(MSG_UNKNOWN_APP.format(name=app.name, sha=sha[:12]))]
            return failed
        rendering = render_with_neighbours(root, config, apps=[app.name])
    rendered = next(r for r in rendering.apps if r.spec.name == app.name)
    declared = Declarations.of(rendering.everything, specs=config.apps)
    push.timings["render"] = time.monotonic() - rendered_at
    targets = ctx.targets()
    tooling = ctx.settings.applyset_tooling or DEFAULT_TOOLING
    if app.target in targets:
        refusal = targets[app.target].repository_refusal(forge.repository)
        if refusal is not None:
            refused = AppResult(name=app.name, target=app.target, commit=sha)
            refused.errors = [ObjectError(refusal, reason=REPOSITORY_REFUSED)]
            return refused
    health_started: list[float] = []

    def progress(_app: str) -> Progress:
        def report(step: str, done: int, total: int) -> None:
            if step.startswith("waiting") and not health_started:
                health_started.append(time.monotonic())

        return report

    applied_at = time.monotonic()
    with Clusters(targets, concurrency=ctx.settings.kube_concurrency) as clusters:
        before = None
        if app.target in targets:
            with suppress(Exception):  # the apply says why the cluster cannot be read
                before = deployed_commit(
                    clusters.get(app.target),
                    app.name,
                    namespace=app_namespace(rendered.spec),
                    tooling=tooling,
                )
        if before is not None and before.commit != sha:
            _have(push, before.commit)  # for the engine's older-commit refusal
        result = run_apply(
            [rendered],
            clusters,
            commit=sha,
            field_manager=ctx.settings.field_manager,
            tooling=tooling,
            progress=progress,
            is_ancestor=git_is_ancestor(repo_path),
            declared=declared,
            digests={app.name: app_digest(rendered.spec, rendered.manifests)},
        )
        (outcome,) = result.apps
        unreachable = any(e.ref is None and e.transient for e in outcome.errors)
        if unreachable:
            outcome.notes.append(MSG_LIVE_NOW_UNKNOWN.format(target=app.target))
        elif not outcome.ok:
            outcome.notes.append(_live_now(clusters, app, rendered.spec, tooling, sha))
    ended = time.monotonic()
    waited = health_started[0] if health_started else ended
    push.timings["apply"] = waited - applied_at
    push.timings["health"] = ended - waited
    return outcome


def _live_now(clusters: Clusters, app: AppRun, spec: AppSpec, tooling: str, sha: str) -> str:
    """What runs now on the app's target after a failed or unhealthy deploy."""
    from bot.cluster.apply import deployed_commit
    from bot.cluster.plan import app_namespace

    try:
        live = deployed_commit(
            clusters.get(app.target), app.name, namespace=app_namespace(spec), tooling=tooling
        )
    except Exception:
        return MSG_LIVE_NOW_MIXED.format(target=app.target, sha=sha[:7], live="?", at="unreadable")
    if live is None:
        return MSG_LIVE_NOW_NONE.format(target=app.target, sha=sha[:7])
    if live.commit == sha:
        return MSG_LIVE_NOW_SAME.format(target=app.target, sha=sha[:7])
    return MSG_LIVE_NOW_MIXED.format(
        target=app.target, sha=sha[:7], live=live.commit[:7], at=live.applied_at or "time unknown"
    )


def _end_app(
    push: _Push, key: str, state: AppState, detail: str, result: AppResult | None
) -> DeployOutcome:
    """Store the app's result, settle it in the record, queue the apps it unblocked, mark the
    app's commit done, and report when the run is settled."""
    ctx = push.ctx
    if result is not None:
        ctx.state.store_result(push.repo, push.sha, key, app_result_to_json(result))
    run, ready = push.change(lambda r: r.finish(key, state, detail))
    app = run.apps[key]
    if state is not AppState.PAUSED and state is not AppState.SUPERSEDED:
        ctx.state.commit_done(push.repo, app.target, app.name, push.sha)
    ctx.log.info("%s %s%s", key, state.value, f": {detail}" if detail else "")
    push.queue(ready)
    push.report_if_due(run)
    outcome = {
        AppState.DEPLOYED: DEPLOYED,
        AppState.SUPERSEDED: SUPERSEDED,
        AppState.PAUSED: PAUSED,
    }.get(state, FAILED)
    return DeployOutcome(outcome, detail, queued=tuple(ready), timings=dict(push.timings))


# -- 3. resume ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeOutcome:
    """What a resume did: the app jobs it queued, per run key."""

    outcome: str
    queued: dict[str, tuple[str, ...]] = field(default_factory=dict)


def resume_deploys(state: JobState, enqueue: Enqueue) -> ResumeOutcome:
    """Go on with every push that has paused apps whose pause was lifted, oldest push first
    (``gitops-bot resume`` queues this job): each such app (and the apps waiting for it) is
    queued again; an older push's app then finds itself superseded by the newer one."""
    queued: dict[str, tuple[str, ...]] = {}
    for run_key in state.parked_runs():
        data = state.run_at(run_key)
        if data is None:
            continue
        run = RunRecord.from_json(data)
        repo = RepoKey(run.provider, run.repository)

        def still(app: AppRun, repository: str = run.repository) -> str | None:
            found = state.pause_of(repository, app.name)
            return _pause_text(found) if found is not None else None

        def unpark(data: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
            if data is None:
                return None, []
            record = RunRecord.from_json(data)
            ready = record.unpark(still)
            return record.to_json(), ready

        ready = state.update_run(repo, run.sha, unpark, parked=_is_parked)
        for key in ready:
            enqueue("deploy_app", (run.event, key))
        if ready:
            queued[run_key] = tuple(ready)
    return ResumeOutcome("resumed" if queued else "nothing_paused", queued)
