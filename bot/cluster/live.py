"""The live preview of a change from a terminal: ``gitops-bot preview --kubeconfig``.

Like the offline preview, the base commit selects the affected apps (or ``--app`` names them);
then the head is rendered and every selected app is dry-run against the one cluster the
kubeconfig names, instead of being diffed against the base. An app removed from
``.gitops.yaml`` at head is previewed with no objects: with prune on, its members show as
deletions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.errors import KubeError
from bot.cluster.preview import DEFAULT_FIELD_MANAGER
from bot.cluster.runner import Clusters, run_preview
from bot.cluster.targets import Targets
from bot.diff import redact_values, rendered_secret_values
from bot.errors import ConfigError, GitopsError
from bot.manifests import (
    RepoConfig,
    changed_files,
    checkout,
    config_errors,
    load_config,
    render_apps,
    resolve_commit,
    select_apps,
)
from bot.model import AppResult, Mode, ObjectError, RunResult


def live_preview(
    repo: Path,
    base: str,
    head: str,
    *,
    kubeconfig: Path | None,
    context: str | None = None,
    apps: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str | None = None,
    concurrency: int | None = None,
) -> RunResult:
    """What merging ``head`` would change in the cluster, per selected app (Mode.LIVE).

    Raises :class:`bot.manifests.GitError` for unknown refs and
    :class:`bot.cluster.TargetError` for an unusable kubeconfig; everything else ends up in
    the result. ``tooling`` defaults to the bot's own."""
    say = progress or (lambda _message: None)
    tooling = tooling or DEFAULT_TOOLING
    base_sha, head_sha = resolve_commit(repo, base), resolve_commit(repo, head)
    result = RunResult(mode=Mode.LIVE, base=base_sha, head=head_sha)
    with checkout(repo, base_sha) as base_root, checkout(repo, head_sha) as head_root:
        try:
            config_new = load_config(head_root)
        except ConfigError as exc:
            result.errors.extend(config_errors(exc))
            return result
        config_old: RepoConfig | None
        try:
            config_old = load_config(base_root)
        except ConfigError:
            config_old = None
        known_new = set(config_new.names)
        selection = select_apps(
            config_old=config_old,
            config_new=config_new,
            changed_files=changed_files(repo, base_sha, head_sha),
            base_root=base_root,
            head_root=head_root,
            apps=apps,
        )
        result.errors.extend(selection.errors)
        result.unowned_files = selection.unowned_files
        names = selection.names
        say(f"rendering {len(names)} app(s) at head {head_sha[:12]}")
        rendered = render_apps(head_root, config_new, apps=[n for n in names if n in known_new])
    removed = (
        [s for s in config_old.apps if s.name in names and s.name not in known_new]
        if config_old is not None
        else []
    )
    target = context or "kubeconfig"
    targets = Targets.single(target, kubeconfig=kubeconfig, context=context)
    say(f"dry-running {sum(len(r.manifests) for r in rendered)} object(s) on the cluster")
    with Clusters(targets, concurrency=concurrency) as clusters:
        live = run_preview(
            rendered,
            clusters,
            head=head_sha,
            base=base_sha,
            field_manager=field_manager,
            tooling=tooling,
            target_override=target,
        )
    result.apps = live.apps
    # What the deploy does with an app removed from .gitops.yaml: nothing; its objects stay.
    for spec in removed:
        app = AppResult(name=spec.name, target=target, commit=head_sha)
        app.notes.append(REMOVED_APP.format(name=spec.name))
        result.apps.append(app)
    return result


REMOVED_APP = (
    "app {name!r} was removed from .gitops.yaml: its objects stay in the cluster (a deploy "
    "deletes only what an app it still deploys no longer declares); to delete them, first "
    "merge the app with its directory emptied, then remove it"
)

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
) -> RunResult:
    """Drift of every app (or those named) of ``.gitops.yaml`` at ``ref`` (Mode.DRIFT): each
    app is compared with Git at the commit its ApplySet parent says was deployed last, checked
    out once per distinct commit. Apps never deployed get a note and no changes."""
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
