"""What a change does, per app: two commits rendered, diffed offline and dry-run live.

The one engine behind ``gitops-bot preview`` and the bot's preview job (:mod:`bot.jobs.preview`):
both hand it a repository and two commits (the CLI: ``--base`` and ``--head``; the bot: the
base branch's head and the PR's merge result) and get a :class:`~bot.model.RunResult`.

* **Which apps.** Those the change touches (:func:`bot.manifests.select_apps`, through Kustomize
  bases, Helm values and generator files; every app when the base's configuration cannot be
  read), or those named; changed files no app reads are named in the result.
* **Offline** (no cluster): the apps rendered at both commits, diffed per object. An app only at
  head: all created; only at base: nothing deleted (a deploy never touches an app removed from
  ``.gitops.yaml``; a note says its objects stay); a moved ``target``: created on the new one,
  with a note; ``createNamespace: true``: its Namespace shown created; an app whose head does
  not render cleanly: its errors only (the deploy would apply nothing of it); errors rendering
  the base are notes (a PR is not to blame for its base); workloads that will restart.
* **Live** (:class:`LiveTargets`): each app rendered at head is dry-run against its target (or
  the one target the CLI's ``--kubeconfig`` names), and every change is classified as this
  change's own (base → head), drift the merge overwrites, or both
  (:func:`bot.impact.classify_origins`; the base's version of the few objects both change is
  dry-run too); the workloads that will restart come from the live objects and the dry-run's
  answers (:func:`bot.impact.workload_restarts`). A target that cannot be reached gives its
  apps their offline diff, labelled (``fallback``, the bot).
* **Refused** (``refuse``, the bot): an app whose target's ``repositories`` does not name the
  repository gets that refusal as its only content, and nothing is sent to the cluster.

No forge, no Redis: the job adds those. Secret values are masked in every diff and scrubbed
from every message before the result leaves.

Process-wide state: none. The two renders of one preview share a parse cache (a file unchanged
between base and head is parsed once: about a fifth of the CPU of the 10,000-object diff in
``bench/manifests.py``), made for the call and dropped with it, so no value outlives the job.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.checkouts import local_merge
from bot.diff import diff_app, redact_values, rendered_secret_values
from bot.errors import ConfigError
from bot.impact import classify_origins, objects_needing_base_dry_run, workload_restarts
from bot.manifests.changes import select_apps
from bot.manifests.config import CONFIG_FILE, RepoConfig, config_errors, load_config
from bot.manifests.gitrepo import changed_files, checkouts, resolve_commit
from bot.manifests.render import ParseCache, RenderedApp, render_apps, render_with_neighbours
from bot.model import (
    AppResult,
    Change,
    Manifest,
    Mode,
    Obj,
    ObjectError,
    RunResult,
    Source,
)
from bot.settings import Settings

if TYPE_CHECKING:  # the cluster engine (and the kubernetes client) loads for live previews only
    from bot.cluster.client import Cluster
    from bot.cluster.owners import Declarations
    from bot.cluster.runner import Clusters
    from bot.cluster.targets import Targets

log = logging.getLogger("gitops_bot.jobs")

Progress = Callable[[str], None]

MSG_BASE_CONFIG = "the base configuration could not be read ({error}); every app counts as affected"
MSG_BASE_ERROR = "at base: {message}"
MSG_LEFT_BEHIND = (
    "app {name!r} was removed from .gitops.yaml: its {count} object(s) stay in the cluster (a "
    "deploy deletes only what an app it still deploys no longer declares); to delete them, "
    "first merge the app with its directory emptied, then remove it"
)
MSG_NOT_DEPLOYABLE = (
    "not previewed: a deploy does not apply an app that does not render cleanly, so this "
    "change would apply nothing of it; fix the errors above to see its diff"
)
MSG_NAMESPACE_MOVED = (
    "namespace changed from {old!r} to {new!r}: the app's ApplySet moves with it, so the "
    "{count} object(s) left in {old!r} are not deleted by the deploy"
)
MSG_TARGET_MOVED = (
    "target changed from {old!r} to {new!r}: objects are created on {new!r}; the bot does not "
    "delete them from {old!r}"
)
MSG_OFFLINE_FALLBACK = (
    "offline diff: target {target!r} could not be reached ({error}), so this app's diff "
    "compares the manifests with the base commit, not with the cluster"
)
MSG_MERGE_CONFLICT = "{head} does not merge cleanly into {base}: conflicts in {files}"
UNEXPECTED = "unexpected error ({kind}) while previewing this app; the details are in the bot's log"
REPOSITORY_REFUSED = "RepositoryNotAllowed"


@dataclass(frozen=True)
class LiveTargets:
    """Where and how the live part of a preview runs.

    ``override`` sends every app to that one target (the CLI's ``--kubeconfig``);
    ``fallback`` (the bot) gives the apps of a target that cannot be reached their offline
    diff, labelled, instead of an error."""

    targets: Targets
    field_manager: str = "gitops-bot"
    #: ``applyset.kubernetes.io/tooling`` (None: the bot's own, ``gitops-bot/<version>``)
    tooling: str | None = None
    concurrency: int | None = None
    override: str | None = None
    fallback: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        targets: Targets,
        *,
        override: str | None = None,
        fallback: bool = False,
    ) -> LiveTargets:
        return cls(
            targets=targets,
            field_manager=settings.field_manager,
            tooling=settings.applyset_tooling,
            concurrency=settings.kube_concurrency,
            override=override,
            fallback=fallback,
        )


@dataclass
class Comparison:
    """A preview's result, and what the job labels in its status: ``unreachable`` maps each
    target that could not be reached to the reason (its apps, ``offline_apps``, show their
    offline diff); ``refused`` each target this repository may not use to the refusal."""

    result: RunResult
    unreachable: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    #: seconds spent rendering both commits (``render``), diffing (``diff``), dry-running
    #: (``dry_run``, live only)
    timings: dict[str, float] = field(default_factory=dict)
    #: apps whose diff is the offline one because their target could not be reached
    offline_apps: list[str] = field(default_factory=list)


@dataclass
class OpenChange:
    """Two commits checked out and their configurations read, for :func:`compare`."""

    repo: Path
    base_sha: str
    head_sha: str
    base_root: Path
    head_root: Path
    files: list[str]
    config_new: RepoConfig | None
    config_error: ConfigError | None
    config_old: RepoConfig | None
    base_note: str | None

    @property
    def app_names(self) -> list[str]:
        """Every app of the repository at either commit (head's order first)."""
        names = list(self.config_new.names) if self.config_new is not None else []
        if self.config_old is not None:
            names += self.config_old.names
        return list(dict.fromkeys(names))


@contextmanager
def open_change(repo: Path, base: str, head: str) -> Iterator[OpenChange]:
    """Check out ``base`` and ``head`` of ``repo`` (temporary trees, removed on exit) and read
    both configurations. Raises :class:`bot.manifests.GitError` for an unknown ref; a broken
    head configuration is kept in ``config_error`` (the result's errors)."""
    base_sha, head_sha = resolve_commit(repo, base), resolve_commit(repo, head)
    files = changed_files(repo, base_sha, head_sha)
    with checkouts(repo, base_sha, head_sha) as (base_root, head_root):
        config_new: RepoConfig | None = None
        config_error: ConfigError | None = None
        try:
            config_new = load_config(head_root)
        except ConfigError as exc:
            config_error = exc
        config_old: RepoConfig | None = None
        base_note = None
        try:
            config_old = load_config(base_root)
        except ConfigError as exc:
            base_note = MSG_BASE_CONFIG.format(error=exc)
        yield OpenChange(
            repo=repo,
            base_sha=base_sha,
            head_sha=head_sha,
            base_root=base_root,
            head_root=head_root,
            files=files,
            config_new=config_new,
            config_error=config_error,
            config_old=config_old,
            base_note=base_note,
        )


def preview_commits(
    repo: Path,
    base: str,
    head: str,
    *,
    apps: Sequence[str] | None = None,
    live: LiveTargets | None = None,
    merge: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """What ``gitops-bot preview`` prints: the change from ``base`` to ``head`` of the
    repository at ``repo``, per app; offline unless ``live``. With ``merge``, ``head`` is first
    merged into ``base`` as the bot merges a pull request (what merging it would deploy).

    Raises :class:`bot.manifests.GitError` for unknown refs and :class:`bot.cluster.TargetError`
    for unusable targets; everything else ends up in the result."""
    if merge:
        base_sha, head_sha = resolve_commit(repo, base), resolve_commit(repo, head)
        merged = local_merge(repo, base_sha, head_sha)
        if merged.sha is None:
            failed = RunResult(mode=Mode.LIVE if live else Mode.OFFLINE, base=base_sha)
            failed.errors.append(
                ObjectError(
                    MSG_MERGE_CONFLICT.format(
                        head=head_sha[:12], base=base_sha[:12], files=", ".join(merged.conflicts)
                    ),
                    reason="MergeConflict",
                )
            )
            return failed
        base, head = base_sha, merged.sha
    with open_change(repo, base, head) as change:
        return compare(change, apps=apps, live=live, progress=progress).result


def compare(
    change: OpenChange,
    *,
    apps: Sequence[str] | None = None,
    also: Sequence[str] = (),
    live: LiveTargets | None = None,
    refuse: Callable[[str], str | None] | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """The per-app preview of ``change``: the apps named in ``apps`` (even unaffected ones), or
    the affected ones plus those in ``also``; offline, or against the clusters of ``live``.
    ``refuse(target)`` says why the repository may not use a target (the bot: the target's
    ``repositories``); such an app gets that error and nothing else, offline or live."""
    say = progress or (lambda _message: None)
    started = time.monotonic()
    mode = Mode.LIVE if live is not None else Mode.OFFLINE
    result = RunResult(mode=mode, base=change.base_sha, head=change.head_sha)
    comparison = Comparison(result)
    if change.config_new is None:
        assert change.config_error is not None
        result.errors.extend(config_errors(change.config_error))
        return comparison
    if not apps:
        say(f"{len(change.files)} file(s) changed; finding affected apps")
    selection = select_apps(
        config_old=change.config_old,
        config_new=change.config_new,
        changed_files=change.files,
        base_root=change.base_root,
        head_root=change.head_root,
        apps=apps,
    )
    names = selection.names
    if not apps and also:
        names = list(dict.fromkeys([*names, *also]))
        if len(names) > len(selection.names):
            # named apps the change does not touch: selected by name, errors for unknown ones
            named = select_apps(
                config_old=change.config_old,
                config_new=change.config_new,
                changed_files=(),
                apps=[n for n in also if n not in selection.names],
            )
            selection.errors.extend(named.errors)
            names = [*selection.names, *named.names]
    result.errors.extend(selection.errors)
    result.unowned_files = selection.unowned_files
    say(f"rendering {len(names)} app(s) at head {change.head_sha[:12]}")
    # files unchanged between the commits are parsed once and shared by both renders
    cache: ParseCache = {}
    # The head is checked against every app sharing its target (an object two apps declare
    # fails both); such an app joins the preview, since the deploy refuses it too.
    declared: Declarations | None = None
    if live is None:
        rendered = render_apps(change.head_root, change.config_new, apps=names, cache=cache)
    else:
        from bot.cluster.owners import Declarations

        # who declares what at head, from every app on the targets concerned: the deploy
        # decides about objects moving between apps from the same (bot.cluster.owners)
        rendering = render_with_neighbours(
            change.head_root, change.config_new, apps=names, cache=cache, one_target=live.override
        )
        rendered = rendering.apps
        declared = Declarations.of(
            rendering.everything, specs=change.config_new.apps, one_target=live.override
        )
    new = {r.spec.name: r for r in rendered}
    names = [*names, *(name for name in new if name not in names)]
    old: dict[str, RenderedApp] = {}
    if change.config_old is not None:
        say(f"rendering {len(names)} app(s) at base {change.base_sha[:12]}")
        old = {
            r.spec.name: r
            for r in render_apps(
                change.base_root, change.config_old, apps=names, cache=cache, check_shared=False
            )
        }
    rendered_at = time.monotonic()
    comparison.timings["render"] = rendered_at - started
    say("diffing")
    offline = {
        name: _diff_one(name, old.get(name), new.get(name), change.head_sha, change.base_note)
        for name in names
    }
    refused: dict[str, AppResult] = {}
    for name in names:
        target = new[name].spec.target if name in new else None
        refusal = refuse(target) if refuse is not None and target is not None else None
        if target is not None and refusal is not None:
            # nothing of it goes to that cluster, not even a dry-run
            comparison.refused[target] = refusal
            app = AppResult(name=name, target=target, commit=change.head_sha)
            app.errors.append(ObjectError(refusal, reason=REPOSITORY_REFUSED))
            refused[name] = app
    diffed_at = time.monotonic()
    comparison.timings["diff"] = diffed_at - rendered_at
    if live is None:
        result.apps = [refused.get(name) or offline[name] for name in names]
    else:
        from bot.cluster.runner import Clusters

        live_apps = [n for n in names if n in new and not new[n].errors and n not in refused]
        count = sum(len(new[n].manifests) for n in live_apps)
        say(f"dry-running {count} object(s) of {len(live_apps)} app(s) on the cluster")
        with Clusters(live.targets, concurrency=live.concurrency) as clusters:
            for name in names:
                if name not in live_apps:
                    app = refused.get(name) or offline[name]
                    if live.override:
                        app.target = live.override
                    result.apps.append(app)
                    continue
                result.apps.append(
                    _live_one(
                        clusters,
                        live,
                        comparison,
                        old.get(name),
                        new[name],
                        offline[name],
                        change,
                        declared=declared,
                    )
                )
        if comparison.offline_apps and len(comparison.offline_apps) == len(result.apps):
            result.mode = Mode.OFFLINE  # every app fell back: the report is an offline one
        comparison.timings["dry_run"] = time.monotonic() - diffed_at
    # Validation and server messages can quote a Secret's value.
    manifests = [m for app in (*new.values(), *old.values()) for m in app.manifests]
    comparison.result = redact_values(result, rendered_secret_values(manifests))
    return comparison


# -- offline --------------------------------------------------------------------------------------


def _diff_one(
    name: str,
    before: RenderedApp | None,
    after: RenderedApp | None,
    commit: str,
    base_note: str | None,
) -> AppResult:
    old_objects = before.manifests if before else []
    if after is None:
        # What the deploy does with a removed app: nothing. Its objects stay.
        assert before is not None
        spec = before.spec
        app = AppResult(name=name, target=spec.target, commit=commit)
        app.notes = [MSG_LEFT_BEHIND.format(name=name, count=len(old_objects))]
    elif after.errors:
        # What the deploy does with an app that does not render cleanly: nothing.
        spec = after.spec
        app = AppResult(name=name, target=spec.target, commit=commit)
        app.errors.extend(after.errors)
        app.notes.extend([*after.notes, MSG_NOT_DEPLOYABLE])
    else:
        spec = after.spec
        moved = before is not None and before.spec.target != spec.target
        if before is not None and spec.create_namespace:
            old_objects = _with_created_namespace(before)
        app = diff_app(
            app=name,
            target=spec.target,
            old=[] if moved else old_objects,
            new=_with_created_namespace(after),
            commit=commit,
            prune=spec.prune,
        )
        app.notes.extend(after.notes)
        # a moved app starts afresh on its new target: nothing there restarts
        before_objects = [] if moved else [m.obj for m in old_objects]
        app.restarts = workload_restarts(before_objects, [m.obj for m in after.manifests])
        old_namespace = before.spec.namespace if before is not None else None
        if before is not None and not moved and old_namespace != spec.namespace:
            # the deploy prunes through the ApplySet parent, which lives in the app's namespace
            left = [c for c in app.changes if c.change is Change.DELETE]
            if left:
                app.changes = [c for c in app.changes if c.change is not Change.DELETE]
                app.notes.append(
                    MSG_NAMESPACE_MOVED.format(
                        old=old_namespace or "default",
                        new=spec.namespace or "default",
                        count=len(left),
                    )
                )
        if moved:
            assert before is not None
            app.notes.append(MSG_TARGET_MOVED.format(old=before.spec.target, new=spec.target))
    if before is not None:
        app.notes.extend(MSG_BASE_ERROR.format(message=_describe(e)) for e in before.errors)
    if base_note:
        app.notes.append(base_note)
    return app


def _with_created_namespace(rendered: RenderedApp) -> list[Manifest]:
    """The app's objects, with the Namespace ``createNamespace: true`` creates first (unless the
    app declares that Namespace itself), so the preview shows it created like any object.

    The deploy creates it when missing and never deletes it: turning the key off, the base's
    Namespace is simply not compared (no deletion shown)."""
    spec = rendered.spec
    if not (spec.create_namespace and spec.namespace):
        return list(rendered.manifests)
    if any(m.ref.key == ("", "Namespace", "", spec.namespace) for m in rendered.manifests):
        return list(rendered.manifests)
    namespace: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace}}
    source = Source(file=CONFIG_FILE, line=spec.line)
    return [Manifest(app=spec.name, obj=namespace, source=source), *rendered.manifests]


def _describe(error: ObjectError) -> str:
    where = error.file or ""
    if where and error.line:
        where = f"{where}:{error.line}"
    return f"{where}: {error.message}" if where else error.message


# -- live -----------------------------------------------------------------------------------------


def _tooling(live: LiveTargets) -> str:
    from bot.cluster.applyset import DEFAULT_TOOLING

    return live.tooling or DEFAULT_TOOLING


def _unreachable(app: AppResult) -> ObjectError | None:
    """The app-level transient error of a dry-run that reached nothing (the target's API could
    not be read), else None."""
    if app.changes:
        return None
    for error in app.errors:
        if error.ref is None and error.transient:
            return error
    return None


def _fallback(comparison: Comparison, offline: AppResult, target: str, reason: str) -> AppResult:
    comparison.offline_apps.append(offline.name)
    offline.target = target
    offline.notes.insert(0, MSG_OFFLINE_FALLBACK.format(target=target, error=reason))
    return offline


def _live_one(
    clusters: Clusters,
    live: LiveTargets,
    comparison: Comparison,
    before: RenderedApp | None,
    after: RenderedApp,
    offline: AppResult,
    change: OpenChange,
    *,
    declared: Declarations | None,
) -> AppResult:
    """One app dry-run on its target, classified and with its restarts; never raises."""
    from bot.cluster.errors import KubeError
    from bot.cluster.preview import preview_app
    from bot.jobs.deploy import git_is_ancestor

    spec = after.spec
    target = live.override or spec.target
    if target in comparison.unreachable:
        return _fallback(comparison, offline, target, comparison.unreachable[target])
    try:
        cluster = clusters.get(target)
        observed: list[tuple[Obj | None, Obj]] = []
        app = preview_app(
            cluster,
            spec,
            after.manifests,
            field_manager=live.field_manager,
            commit=change.head_sha,
            tooling=_tooling(live),
            declared=declared,
            is_ancestor=git_is_ancestor(change.repo),
            observed=observed,
        )
        down = _unreachable(app)
        if down is not None and live.fallback:
            comparison.unreachable[target] = down.message
            return _fallback(comparison, offline, target, down.message)
        base_live = _base_dry_run(cluster, live, before, offline, app, change)
        app = classify_origins(pr=offline, live=app, base_live=base_live)
        app.restarts = workload_restarts(
            [seen for seen, _ in observed if seen is not None], [answer for _, answer in observed]
        )
    except KubeError as exc:
        app = AppResult(name=spec.name, target=target, commit=change.head_sha)
        app.errors.append(exc.to_object_error())
    except Exception as exc:
        # A bug costs one app its result, not the whole preview its report. The stack, not the
        # message: a message may quote a value from a manifest.
        log.error(
            "unexpected %s previewing app %s:\n%s",
            type(exc).__name__,
            spec.name,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        app = AppResult(name=spec.name, target=target, commit=change.head_sha)
        app.errors.append(
            ObjectError(UNEXPECTED.format(kind=type(exc).__name__), reason="Internal")
        )
    app.notes[:0] = list(after.notes)
    return app


def _base_dry_run(
    cluster: Cluster,
    live: LiveTargets,
    before: RenderedApp | None,
    offline: AppResult,
    app: AppResult,
    change: OpenChange,
) -> AppResult | None:
    """The cluster compared with the base's version of the objects both the change and the
    cluster change (so their drift can be told from the change's own), or None when none."""
    if before is None or before.errors:
        return None
    needed = {ref.key for ref in objects_needing_base_dry_run(pr=offline, live=app)}
    if not needed:
        return None
    from bot.cluster.preview import preview_app

    manifests = [m for m in before.manifests if m.ref.key in needed]
    # forced, as drift is: the question is what differs from the base, not who owns it
    return preview_app(
        cluster,
        before.spec,
        manifests,
        field_manager=live.field_manager,
        commit=change.base_sha,
        tooling=_tooling(live),
        force=True,
        prune=False,
    )
