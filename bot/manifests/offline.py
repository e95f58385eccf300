"""The offline preview: render two commits of a repository and diff the objects per app.

No cluster, no forge: this is what ``gitops-bot preview`` prints, and the preview a job falls
back to when no cluster is reachable. Only the affected apps are rendered (see
:mod:`bot.manifests.changes`) unless apps are named explicitly.

Rules of the comparison:

* an app only at head: all its objects are created; only at base: all deleted when its ``prune``
  is on, otherwise a note says its objects would stay in the cluster;
* an app whose ``target`` changed: everything is created on the new target, with a note that the
  old target keeps its objects (the bot does not prune across targets);
* an app with ``createNamespace: true`` shows its Namespace created (unless its base had it too);
* errors rendering head are the app's errors, and while there are any, deletions are not shown
  (objects of a file that failed to render would look deleted); errors rendering base become
  notes (the diff is then against what base could render): a PR cannot be blamed for its base.

Process-wide state: none. The two renders of one preview share a parse cache (a file unchanged
between base and head is parsed once: about a fifth of the CPU of the 10,000-object diff in
``bench/manifests.py``), made for the call and dropped with it, so no value outlives the job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bot.diff import diff_app, redact_values, rendered_secret_values
from bot.errors import ConfigError
from bot.impact import workload_restarts
from bot.manifests.changes import select_apps
from bot.manifests.config import CONFIG_FILE, ConfigProblems, RepoConfig, load_config
from bot.manifests.gitrepo import changed_files, checkouts, resolve_commit
from bot.manifests.render import ParseCache, RenderedApp, render_apps
from bot.model import AppResult, Change, Manifest, Mode, Obj, ObjectError, RunResult, Source

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

Progress = Callable[[str], None]


def config_errors(exc: ConfigError) -> list[ObjectError]:
    """A configuration error as report errors, one per problem, with file and line."""
    problems = exc.problems if isinstance(exc, ConfigProblems) else [exc]
    return [
        ObjectError(p.message, file=p.file, line=p.line, reason="ConfigError") for p in problems
    ]


def offline_preview(
    repo: Path,
    base: str,
    head: str,
    *,
    apps: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """The per-app diff from commit ``base`` to commit ``head`` of the repository at ``repo``.

    ``apps`` restricts the preview to those names (even if unaffected); by default only the
    affected apps are previewed. Raises :class:`bot.manifests.gitrepo.GitError` for unknown refs;
    everything else ends up in the result's errors."""
    say = progress or (lambda _msg: None)
    base_sha, head_sha = resolve_commit(repo, base), resolve_commit(repo, head)
    result = RunResult(mode=Mode.OFFLINE, base=base_sha, head=head_sha)
    files = changed_files(repo, base_sha, head_sha)
    with checkouts(repo, base_sha, head_sha) as (base_root, head_root):
        try:
            config_new = load_config(head_root)
        except ConfigError as exc:
            result.errors.extend(config_errors(exc))
            return result
        base_note = None
        config_old: RepoConfig | None
        try:
            config_old = load_config(base_root)
        except ConfigError as exc:
            config_old, base_note = None, MSG_BASE_CONFIG.format(error=exc)
        if not apps:
            say(f"{len(files)} file(s) changed; finding affected apps")
        selection = select_apps(
            config_old=config_old,
            config_new=config_new,
            changed_files=files,
            base_root=base_root,
            head_root=head_root,
            apps=apps,
        )
        result.errors.extend(selection.errors)
        result.unowned_files = selection.unowned_files
        names = selection.names
        say(f"rendering {len(names)} app(s) at head {head_sha[:12]}")
        # files unchanged between the commits are parsed once and shared by both renders
        cache: ParseCache = {}
        # The head is checked against every app sharing its target (an object two apps declare
        # fails both); such an app joins the preview, since the deploy refuses it too.
        rendered = render_apps(head_root, config_new, apps=names, cache=cache)
        new = {r.spec.name: r for r in rendered}
        names = [*names, *(name for name in new if name not in names)]
        old: dict[str, RenderedApp] = {}
        if config_old is not None:
            say(f"rendering {len(names)} app(s) at base {base_sha[:12]}")
            old = {
                r.spec.name: r
                for r in render_apps(
                    base_root, config_old, apps=names, cache=cache, check_shared=False
                )
            }
    say("diffing")
    for name in names:
        result.apps.append(_diff_one(name, old.get(name), new.get(name), head_sha, base_note))
    # Validation messages (kubernetes-validate, YAML errors) can quote a Secret's value.
    declared = [m for rendered in (*new.values(), *old.values()) for m in rendered.manifests]
    return redact_values(result, rendered_secret_values(declared))


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
