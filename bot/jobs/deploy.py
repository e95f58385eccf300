"""Deploy a commit of a GitOps repository: render its apps and apply them, pruned and waited for.

What ``gitops-bot apply`` runs, and where the deploy job (issue 15: per-app jobs and locks, the
report on the commit and the merged PR) builds: the same engine, so the CLI and the bot deploy
alike. Today a plain function on a local repository.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.model import Mode, ObjectError, RunResult
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.cluster.apply import IsAncestor, Progress

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
        )
    result.dry_run = dry_run
    return result
