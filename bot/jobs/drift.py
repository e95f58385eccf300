"""Drift of a repository's apps: each compared with Git at the commit its target last deployed.

Moved here as it was from ``bot/cluster/live.py``; the periodic drift job (issue 16) builds on
it. ``gitops-bot``'s tests call :func:`drift_report` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.errors import KubeError
from bot.cluster.preview import DEFAULT_FIELD_MANAGER
from bot.cluster.runner import Clusters
from bot.cluster.targets import Targets
from bot.diff import redact_values, rendered_secret_values
from bot.errors import ConfigError, GitopsError
from bot.manifests import checkout, config_errors, load_config, render_apps, resolve_commit
from bot.model import AppResult, Mode, ObjectError, RunResult

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
