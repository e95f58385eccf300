"""Drift of a repository's apps: each compared with Git at the commit its target last deployed.

:func:`drift_report` is the engine (every app of a commit compared with what its target last
deployed); :func:`drift_repository` is the periodic drift job built on it: one issue per
repository and bot instance, and self-heal for apps with ``selfHeal: true`` (its story is in the
comment above it). :func:`drift_issue_text` and :func:`reconcile_drift_issue` are the issue's
text (pure) and its upkeep on the forge; :class:`DriftIssueMemory` keeps the issue's number in
Redis between rounds, so that finding it costs one request or none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.errors import KubeError
from bot.cluster.preview import DEFAULT_FIELD_MANAGER
from bot.cluster.runner import Clusters
from bot.cluster.targets import Targets
from bot.diff import redact_values, rendered_secret_values
from bot.errors import ConfigError, ForgeError, GitopsError, TransientError
from bot.events import DriftEvent
from bot.forges import Forge, Issue, Marker
from bot.forges.sticky import part_limit
from bot.jobs.compare import REPOSITORY_REFUSED
from bot.jobs.context import JobContext
from bot.manifests import checkout, config_errors, load_config, render_apps, resolve_commit
from bot.metrics import record_drifted_apps
from bot.model import AppResult, Change, Mode, ObjectChange, ObjectError, RunResult
from bot.report import MIN_PART_CHARS, comment_parts, escape_md, short_ref

if TYPE_CHECKING:
    from bot.state import JobState, RepoKey

NOT_AT_COMMIT = "{app} is not in .gitops.yaml at its deployed commit {commit}"


def drift_report(
    repo: Path,
    *,
    targets: Targets,
    ref: str = "HEAD",
    apps: Sequence[str] | None = None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str | None = None,
    concurrency: int | None = None,
    fetch: Callable[[Sequence[str]], object] | None = None,
    refusal: Callable[[str], str | None] | None = None,
) -> RunResult:
    """Drift of every app (or those named) of ``.gitops.yaml`` at ``ref`` (Mode.DRIFT): each
    app is compared with Git at the commit its ApplySet parent says was deployed last, checked
    out once per distinct commit. Apps never deployed get a note and no changes.

    ``fetch(commits)`` is called with the deployed commits before they are checked out (the
    drift job fetches them into its cache; a failure is each app's error); ``refusal(target)``
    says why a target may not be read for this repository (the app then gets that error and
    its target is not asked)."""
    from bot.cluster.apply import deployed_commit
    from bot.cluster.drift import NEVER_DEPLOYED, drift_app

    tooling = tooling or DEFAULT_TOOLING
    head_sha = resolve_commit(repo, ref)
    result = RunResult(mode=Mode.DRIFT, head=head_sha)
    with checkout(repo, head_sha) as root:
        try:
            config = load_config(root)
        except ConfigError as exc:
            result.errors.extend(config_errors(exc))
            return result
    specs = [s for s in config.apps if not apps or s.name in apps]
    with Clusters(targets, concurrency=concurrency) as clusters:
        pending: dict[str, list[tuple[int, str]]] = {}
        for index, spec in enumerate(specs):
            app = AppResult(name=spec.name, target=spec.target)
            result.apps.append(app)
            refused = refusal(spec.target) if refusal is not None else None
            if refused is not None:
                app.errors.append(ObjectError(refused, reason=REPOSITORY_REFUSED))
                continue
            try:
                cluster = clusters.get(spec.target)
                deployed = deployed_commit(
                    cluster, spec.name, namespace=spec.namespace, tooling=tooling
                )
            except KubeError as exc:
                app.errors.append(exc.to_object_error())
                continue
            if deployed is None:
                app.notes.append(NEVER_DEPLOYED.format(app=spec.name, target=spec.target))
                continue
            app.commit = deployed.commit
            pending.setdefault(deployed.commit, []).append((index, spec.name))
        for commit, members in pending.items():
            try:
                if fetch is not None:
                    fetch([commit])
                with checkout(repo, commit) as old_root:
                    old_config = load_config(old_root)
                    names = [name for _i, name in members]
                    rendered = {
                        r.spec.name: r for r in render_apps(old_root, old_config, apps=names)
                    }
            except GitopsError as exc:
                for index, _name in members:
                    result.apps[index].errors.append(ObjectError(message=str(exc)))
                continue
            for index, name in members:
                app = result.apps[index]
                found = rendered.get(name)
                if found is None:
                    app.errors.append(ObjectError(NOT_AT_COMMIT.format(app=name, commit=commit)))
                    continue
                cluster = clusters.get(found.spec.target)
                drifted = drift_app(
                    cluster,
                    found.spec,
                    found.manifests,
                    commit=commit,
                    field_manager=field_manager,
                    tooling=tooling,
                )
                drifted.errors[:0] = found.errors
                drifted.notes[:0] = found.notes
                # server messages can quote what was sent, Secret values included
                result.apps[index] = redact_values(
                    RunResult(mode=Mode.DRIFT, apps=[drifted]),
                    rendered_secret_values(found.manifests),
                ).apps[0]
    return result


# == the periodic drift job ========================================================================
#
# Every GITOPS_DRIFT_INTERVAL seconds beat queues ``drift_all``, which queues one drift job per
# served repository (:mod:`bot.jobs.catchup` lists them). The job compares each app of the
# default branch's head with the commit its target last deployed (:func:`drift_report`),
# re-applies the drifted apps marked ``selfHeal: true`` and keeps one issue per repository and
# bot instance (found by its hidden marker) saying what differs:
#
# * drift found: the issue is opened, or edited when its text changed (never re-posted: an
#   unchanged finding writes nothing), or reopened when the bot had closed it;
# * a human closed the issue while the same drift stands: it stays closed until the drift
#   changes (a different finding reopens it with the new text); a deleted issue is opened anew;
# * no drift in any app, every app compared: an open issue is edited to say so and closed with
#   a comment;
# * an app that could not be compared (a target unreachable, a manifest broken at the deployed
#   commit, a target refusing the repository): an open issue says which and why, and is not
#   closed (no drift is claimed where nothing could be read); no issue is opened for that alone;
# * self-heal: what it re-applied is a comment on the issue (opened and closed at once when
#   there was none), so the issue's history shows every hand edit the bot reverted.
#
# Finding the issue costs one request a round, or none: listing every issue of the repository
# (GitHub: 100 a page, the bot's issue anywhere among them) each round would spend the API rate
# limit that previews and deploys need. The issue's number is kept in Redis (DriftIssueMemory,
# :meth:`bot.state.JobState.known_issue`) once found or opened, and so is "a scan found none":
#
# * a number known: that one issue is fetched and checked to be still the bot's, with the
#   marker; gone (deleted, transferred) or no longer the bot's, the issues are scanned again;
# * "none" known: no request at all, until there is an issue to open: then one scan first (the
#   number of an issue opened just before Redis lost its last writes would otherwise be
#   forgotten, and a second issue opened); only the bot opens its issue, and it records what
#   it opens (forgetting "none" before it asks, so a number it could not record means a scan);
# * nothing known (a new repository, Redis flushed): one scan, remembered.

DRIFT_KIND = "drift"
DRIFT_TITLE = "GitOps drift{instance}: {count} app{s} differ{verb} from Git"
DRIFT_TITLE_UNKNOWN = "GitOps drift{instance}: {count} app{s} could not be checked"
DRIFT_TITLE_NONE = "GitOps drift{instance}: none"
DRIFT_REPORT_TITLE = "GitOps drift"
DRIFT_INTRO = (
    "The cluster differs from Git: each app above was compared with the commit its target last "
    "deployed ({deployed}; the apps of `{branch}` at {head}). Re-applying that commit, or the "
    "next deploy of the app, makes these changes. This issue is edited while the drift lasts "
    "and closed when it is gone.{heal_hint}"
)
DRIFT_DEPLOYED = "`{app}` at {commit}"
DRIFT_HEAL_HINT = " Apps with `selfHeal: true` in `.gitops.yaml` are re-applied instead."
DRIFT_UNCHECKED = "### Not checked\n\n{lines}"
DRIFT_UNCHECKED_LINE = "- `{app}` on `{target}`: {reason}"
DRIFT_NOT_HEALED = "### Not healed this round\n\n{lines}"
DRIFT_HEAL_SKIPPED = "- `{app}` on `{target}`: {reason}"
DRIFT_NONE_BODY = (
    "No drift: every app matched the commit its target last deployed (checked at {head})."
)
DRIFT_GONE_COMMENT = "Drift is gone: every app matches the commit its target last deployed."
HEALED_COMMENT = (
    "Self-heal re-applied {items}. Reverted:\n\n{lines}\n\nIt was changed in the cluster by "
    "something other than the bot; the app has `selfHeal: true` in `.gitops.yaml`."
)
HEALED_ITEM = "`{app}` on `{target}` at {commit}"
HEALED_LINE = "- {change} {kind} `{name}`"
HEAL_FAILED = "self-heal of {commit} failed: {reason}"
HEAL_DEPLOYING = "a deploy of {sha} is in progress"
DEPLOYING = "not compared: a deploy of {sha} is in progress"
HEAL_LOCKED = "a deploy holds its lock"
HEAL_PAUSED = "paused"
DRIFT_FULL_COMMAND = "gitops-bot apply --repo . --ref <deployed commit> --dry-run"

# outcomes (gitops_jobs_processed_total{job_type="drift"})
DRIFTED = "drifted"
NO_DRIFT = "no_drift"
UNCHECKED = "unchecked"
BUSY = "busy"
UNAVAILABLE = "unavailable"
DRIFT_CONFIG_ERROR = "config_error"


@dataclass
class Healed:
    """One self-heal: the app, its target, the commit re-applied and what it changed."""

    app: str
    target: str
    commit: str
    changes: list[ObjectChange] = field(default_factory=list)


@dataclass
class DriftOutcome:
    """What one drift job did: ``issue`` is what happened to the issue (``opened``, ``edited``,
    ``reopened``, ``closed``, ``unchanged``, ``left_closed``, ``none``)."""

    outcome: str
    drifted: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    healed: tuple[str, ...] = ()
    issue: str = "none"
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _first_reason(app: AppResult) -> str:
    from bot.jobs.deploy_report import failure_reason

    return failure_reason(app).replace("\n", " ")[:300]


@dataclass(frozen=True)
class DriftText:
    """What the drift issue says: its title, its body without the marker, and whether it
    reports drift (False: only apps that could not be checked)."""

    title: str
    body: str
    drifted: bool


def _instance(instance: str) -> str:
    return f" ({instance})" if instance else ""


def drift_issue_text(
    result: RunResult,
    *,
    branch: str,
    self_heal: bool,
    skipped: Mapping[str, str],
    limit: int,
    instance: str = "",
) -> DriftText | None:
    """The drift issue's text for ``result`` (the drift after self-heal), or None when nothing
    is to be said: no drift and every app compared. Pure: the same finding gives the same text,
    so an unchanged drift never edits the issue. ``instance`` (``GITOPS_INSTANCE``) goes into
    the title, so two bots' issues on one repository tell apart."""
    drifted = [a for a in result.apps if a.has_changes and not a.errors]
    unchecked = [a for a in result.apps if a.errors]
    if not drifted and not unchecked:
        return None
    unchecked_lines = [
        DRIFT_UNCHECKED_LINE.format(
            app=app.name, target=app.target, reason=escape_md(_first_reason(app))
        )
        for app in unchecked
    ]
    skipped_lines = [
        DRIFT_HEAL_SKIPPED.format(
            app=app.name, target=app.target, reason=escape_md(skipped[app.name])
        )
        for app in drifted
        if app.name in skipped
    ]
    tail = ""
    if unchecked_lines:
        tail += "\n\n" + DRIFT_UNCHECKED.format(lines="\n".join(unchecked_lines))
    if skipped_lines:
        tail += "\n\n" + DRIFT_NOT_HEALED.format(lines="\n".join(skipped_lines))
    intro = DRIFT_INTRO.format(
        deployed=", ".join(
            DRIFT_DEPLOYED.format(app=a.name, commit=short_ref(a.commit)) for a in drifted
        ),
        branch=escape_md(branch),
        head=short_ref(result.head),
        heal_hint=DRIFT_HEAL_HINT if self_heal else "",
    )
    shown = RunResult(mode=Mode.DRIFT, head=result.head, apps=drifted)
    if drifted:
        (report,) = comment_parts(
            shown,
            limit=max(limit - len(intro) - len(tail) - 10, MIN_PART_CHARS),
            max_parts=1,
            full_command=DRIFT_FULL_COMMAND,
            title=DRIFT_REPORT_TITLE,
        )
        body = f"{report}\n\n{intro}{tail}"
        count = len(drifted)
        title = DRIFT_TITLE.format(
            instance=_instance(instance), count=count, s=_s(count), verb="s" if count == 1 else ""
        )
        return DriftText(title, body, drifted=True)
    body = f"## {DRIFT_REPORT_TITLE}{tail}"
    title = DRIFT_TITLE_UNKNOWN.format(
        instance=_instance(instance), count=len(unchecked), s=_s(len(unchecked))
    )
    return DriftText(title, body, drifted=False)


def healed_comment(healed: Sequence[Healed]) -> str:
    """The issue comment saying what self-heal re-applied."""
    items = ", ".join(
        HEALED_ITEM.format(app=h.app, target=h.target, commit=short_ref(h.commit)) for h in healed
    )
    lines = [
        HEALED_LINE.format(
            change=c.change.value,
            kind=escape_md(c.ref.kind),
            name=escape_md(f"{c.ref.namespace}/{c.ref.name}" if c.ref.namespace else c.ref.name),
        )
        for h in healed
        for c in h.changes
        if c.change is not Change.UNCHANGED
    ]
    return HEALED_COMMENT.format(items=items, lines="\n".join(lines) or "- (nothing left to do)")


@dataclass(frozen=True)
class DriftIssueMemory:
    """The drift issue's number as Redis keeps it between rounds, for one repository and bot
    instance (``marker``): a number, :data:`~bot.state.NO_ISSUE` or None (not known)."""

    state: JobState
    repo: RepoKey
    marker: Marker
    log: logging.LoggerAdapter[logging.Logger] | logging.Logger = field(
        default_factory=lambda: logging.getLogger("gitops_bot.jobs")
    )

    def known(self) -> int | None:
        return self.state.known_issue(self.repo, self.marker.kind, self.marker.instance)

    def remember(self, number: int) -> None:
        self.state.remember_issue(self.repo, self.marker.kind, self.marker.instance, number)

    def forget(self) -> None:
        self.state.forget_issue(self.repo, self.marker.kind, self.marker.instance)


def _scan(forge: Forge, marker: Marker, memory: DriftIssueMemory) -> Issue | None:
    """Every issue listed until the bot's is found (``Forge.find_issue``); remembered."""
    from bot.state import NO_ISSUE

    issue = forge.find_issue(marker)
    memory.remember(issue.number if issue is not None else NO_ISSUE)
    return issue


def find_drift_issue(
    forge: Forge, marker: Marker, memory: DriftIssueMemory
) -> tuple[Issue | None, bool]:
    """The bot's drift issue, as cheaply as the memory allows (see the story above), and
    whether its absence is only remembered (True: "none" was known, nothing was asked)."""
    from bot.state import NO_ISSUE

    known = memory.known()
    if known == NO_ISSUE:
        return None, True
    if known is not None:
        issue = forge.get_issue(known)
        me = forge.identity().login.casefold()
        if issue is not None and issue.author.casefold() == me and marker.in_body(issue.body):
            return issue, False
        memory.log.info(
            "drift issue #%d is gone or no longer the bot's: scanning the issues", known
        )
    return _scan(forge, marker, memory), False


def _open_issue(forge: Forge, memory: DriftIssueMemory, *, title: str, body: str) -> Issue:
    memory.forget()  # not recorded below (Redis, a crash): the next round scans
    issue = forge.open_issue(title=title, body=body)
    memory.remember(issue.number)
    return issue


def reconcile_drift_issue(
    forge: Forge,
    marker: Marker,
    text: DriftText | None,
    *,
    head: str | None,
    all_checked: bool,
    memory: DriftIssueMemory,
    healed: Sequence[Healed] = (),
) -> str:
    """Make the repository's drift issue say ``text`` (see the story above); returns what
    happened to it. Writes nothing when the issue already says it; reads one issue at most
    while ``memory`` knows it, none while it knows there is none."""
    issue, only_remembered = find_drift_issue(forge, marker, memory)
    opens = bool(healed) or (text is not None and text.drifted)
    if issue is None and only_remembered and opens:
        issue = _scan(forge, marker, memory)  # about to open one: make sure there is none
    none_title = DRIFT_TITLE_NONE.format(instance=_instance(marker.instance))
    none_body = f"{marker.tag()}\n{DRIFT_NONE_BODY.format(head=short_ref(head))}"
    action = "none"
    if text is not None:
        body = f"{marker.tag()}\n{text.body}"
        if issue is None:
            if text.drifted:  # unchecked apps alone open no issue
                issue = _open_issue(forge, memory, title=text.title, body=body)
                action = "opened"
        elif issue.open:
            if issue.body != body or issue.title != text.title:
                issue = forge.update_issue(issue.number, title=text.title, body=body)
                action = "edited"
            else:
                action = "unchanged"
        elif not text.drifted or issue.body == body:
            # nothing new to say, or closed by a person with this very drift standing
            action = "left_closed"
        else:
            issue = forge.update_issue(issue.number, title=text.title, body=body)
            forge.reopen_issue(issue.number)
            action = "reopened"
    elif all_checked and issue is not None and issue.open:
        forge.update_issue(issue.number, title=none_title, body=none_body)
        comment = DRIFT_GONE_COMMENT
        if healed:
            comment = f"{healed_comment(healed)}\n\n{DRIFT_GONE_COMMENT}"
        forge.close_issue(issue.number, comment=comment)
        return "closed"
    if healed:
        if issue is None:
            issue = _open_issue(forge, memory, title=none_title, body=none_body)
            forge.close_issue(issue.number, comment=healed_comment(healed))
            return "opened_closed"
        forge.comment_on_issue(issue.number, healed_comment(healed))
    return action


def drift_repository(event: DriftEvent, ctx: JobContext) -> DriftOutcome:
    """The drift job of one repository (see the story above). Never raises for an outage: a
    forge, Redis or cluster that does not answer is logged and the next round tries again."""
    from bot.cluster.applyset import DEFAULT_TOOLING
    from bot.cluster.errors import KubeError
    from bot.state import LockBusy, RepoKey

    forge, state = ctx.forge, ctx.state
    repo = RepoKey(forge.provider, forge.repository)
    timings: dict[str, float] = {}
    try:
        with state.drift_lock(repo, holder=ctx.job_id):
            started = time.monotonic()
            info = forge.repository_info()
            repo_path, head = ctx.repos.fetch_branch(
                forge.provider, forge.repository, forge.git_access(), info.default_branch
            )
            timings["checkout"] = time.monotonic() - started
            try:
                targets = ctx.targets()
            except KubeError as exc:
                ctx.log.error("drift not checked: %s", exc)
                return DriftOutcome(UNAVAILABLE, detail=str(exc), timings=timings)

            def fetch(commits: Sequence[str]) -> None:
                ctx.repos.fetch_commits(
                    forge.provider, forge.repository, forge.git_access(), list(commits)
                )

            def refusal(target: str) -> str | None:
                if target not in targets:
                    return f"unknown target {target!r}"
                return targets[target].repository_refusal(forge.repository)

            compared_at = time.monotonic()
            tooling = ctx.settings.applyset_tooling or DEFAULT_TOOLING
            result = drift_report(
                repo_path,
                targets=targets,
                ref=head,
                field_manager=ctx.settings.field_manager,
                tooling=tooling,
                concurrency=ctx.settings.kube_concurrency,
                fetch=fetch,
                refusal=refusal,
            )
            timings["compare"] = time.monotonic() - compared_at
            if result.errors:  # .gitops.yaml broken at the head: nothing to compare
                ctx.log.warning(
                    "drift not checked: .gitops.yaml at %s: %s", head[:12], result.errors[0]
                )
                return DriftOutcome(DRIFT_CONFIG_ERROR, timings=timings)
            with checkout(repo_path, head) as root:
                config = load_config(root)
            healing = {s.name for s in config.apps if s.self_heal}
            for index, app in enumerate(result.apps):
                # mid-deploy, the cluster is between two commits: not drift, and not "none"
                deploying = _deploying(ctx, repo, app.target, app.name)
                if deploying is not None and app.has_changes:
                    waiting = AppResult(name=app.name, target=app.target, commit=app.commit)
                    waiting.errors.append(ObjectError(DEPLOYING.format(sha=deploying[:7])))
                    result.apps[index] = waiting
            healed: list[Healed] = []
            skipped: dict[str, str] = {}
            heal_at = time.monotonic()
            for index, app in enumerate(result.apps):
                if app.name not in healing or app.errors or not app.has_changes:
                    continue
                outcome = _heal(ctx, repo, repo_path, app, targets, tooling)
                if isinstance(outcome, str):
                    skipped[app.name] = outcome
                    continue
                healed.append(outcome)
                # what is left after the heal: nothing, or the heal's failure
                left = AppResult(name=app.name, target=app.target, commit=app.commit)
                result.apps[index] = left
            timings["heal"] = time.monotonic() - heal_at
            drifted = [a.name for a in result.apps if a.has_changes and not a.errors]
            unchecked = [a.name for a in result.apps if a.errors]
            for app in result.apps:
                for error in app.errors[:1]:
                    ctx.log.warning("drift of %s not checked: %s", app.name, error.message[:300])
            text = drift_issue_text(
                result,
                branch=info.default_branch,
                self_heal=bool(healing),
                skipped=skipped,
                limit=part_limit(forge),
                instance=ctx.settings.instance,
            )
            posted_at = time.monotonic()
            marker = ctx.marker(DRIFT_KIND)
            issue = reconcile_drift_issue(
                forge,
                marker,
                text,
                head=head,
                all_checked=not unchecked,
                memory=DriftIssueMemory(state, repo, marker, ctx.log),
                healed=healed,
            )
            timings["post"] = time.monotonic() - posted_at
            if not unchecked or drifted:
                try:
                    record_drifted_apps(
                        state.client,
                        forge.repository,
                        len(drifted),
                        ttl=max(3 * ctx.settings.drift_interval, 600.0),
                    )
                except redis.RedisError as exc:
                    ctx.log.warning("could not record the drifted apps for /metrics: %s", exc)
    except LockBusy:
        return DriftOutcome(BUSY, detail="another drift job of this repository runs")
    except (ForgeError, TransientError) as exc:
        ctx.log.warning("drift check not finished, next round retries: %s", exc)
        return DriftOutcome(UNAVAILABLE, detail=str(exc)[:300], timings=timings)
    ctx.log.info(
        "drift: %s drifted, %s not checked, %s healed; issue %s",
        ", ".join(drifted) or "none",
        ", ".join(unchecked) or "none",
        ", ".join(h.app for h in healed) or "none",
        issue,
        extra={"sha": head},  # the default branch's head the apps were listed from
    )
    if drifted:
        outcome = DRIFTED
    elif unchecked:
        outcome = UNCHECKED
    else:
        outcome = NO_DRIFT
    return DriftOutcome(
        outcome,
        drifted=tuple(drifted),
        unchecked=tuple(unchecked),
        healed=tuple(h.app for h in healed),
        issue=issue,
        timings=timings,
    )


def _deploying(ctx: JobContext, repo: RepoKey, target: str, app: str) -> str | None:
    """The commit a deploy of the app is under way for (planned, not ended, not paused), or
    None."""
    from bot.jobs.deploy_run import RunRecord

    latest, done = ctx.state.app_commits(repo, target, app)
    if latest is None or latest == done:
        return None
    if ctx.state.pause_of(repo.repository, app) is not None:
        return None  # a paused deploy is not under way: the drift is real
    data = ctx.state.run(repo, latest)
    if data is None or RunRecord.from_json(data).settled:
        return None  # its record expired, or it ended without marking the app (superseded)
    return latest


def _heal(
    ctx: JobContext,
    repo: RepoKey,
    repo_path: Path,
    drifted: AppResult,
    targets: Targets,
    tooling: str,
) -> Healed | str:
    """Re-apply the drifted app's deployed commit under its deploy lock; the reason when it was
    not (a deploy in progress or holding the lock, a pause), or the heal's failure."""
    from bot.cluster.owners import Declarations
    from bot.cluster.runner import run_apply
    from bot.jobs.deploy import app_digest, git_is_ancestor
    from bot.manifests import render_with_neighbours
    from bot.state import LockBusy

    state = ctx.state
    commit = drifted.commit
    assert commit is not None
    if state.pause_of(repo.repository, drifted.name) is not None:
        return HEAL_PAUSED
    try:
        with state.deploy_lock(
            repo, drifted.target, drifted.name, holder=f"heal-{ctx.job_id}", wait=0
        ):
            with checkout(repo_path, commit) as root:
                config = load_config(root)
                rendering = render_with_neighbours(root, config, apps=[drifted.name])
            rendered = next(r for r in rendering.apps if r.spec.name == drifted.name)
            declared = Declarations.of(rendering.everything, specs=config.apps)
            digest = app_digest(rendered.spec, rendered.manifests)
            # Git wins over whoever changed the field by hand (kubectl edit took its ownership)
            forced = replace(rendered, spec=replace(rendered.spec, force_conflicts=True))
            with Clusters(targets, concurrency=ctx.settings.kube_concurrency) as clusters:
                result = run_apply(
                    [forced],
                    clusters,
                    commit=commit,
                    field_manager=ctx.settings.field_manager,
                    tooling=tooling,
                    is_ancestor=git_is_ancestor(repo_path),
                    declared=declared,
                    digests={drifted.name: digest},
                    wait=False,
                )
    except LockBusy:
        return HEAL_LOCKED
    except GitopsError as exc:
        return HEAL_FAILED.format(commit=commit[:7], reason=str(exc)[:300])
    (applied,) = result.apps
    if applied.errors:
        return HEAL_FAILED.format(commit=commit[:7], reason=_first_reason(applied))
    ctx.log.info("self-heal re-applied %s at %s on %s", drifted.name, commit[:12], drifted.target)
    return Healed(drifted.name, drifted.target, commit, list(applied.changes))
