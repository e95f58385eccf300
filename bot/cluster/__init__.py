"""The cluster engine: the only part of the bot that talks to Kubernetes.

Public API (keyword-only where it matters)::

    Targets.from_settings(clusters_file: Path | None) -> Targets        # GITOPS_CLUSTERS_FILE
    Targets.single(name, *, kubeconfig: Path | None, context: str | None) -> Targets
    targets[name] -> Target                                            # TargetError if unknown
    Cluster(target, *, concurrency=16)                                 # one per target and job
        .close() / context manager
    preview_app(cluster, spec, manifests, *, field_manager="gitops-bot", commit=None,
                tooling=DEFAULT_TOOLING, force=None, prune=None, declared=None,
                is_ancestor=None, observed=None) -> AppResult              # Mode.LIVE
    apply_app(cluster, spec, manifests, *, commit, field_manager="gitops-bot", dry_run=False,
              progress=None, is_ancestor=None, tooling=DEFAULT_TOOLING, wait=True,
              declared=None) -> AppResult
    Declarations.of(rendered, *, specs, one_target=None) -> Declarations  # who declares what
                                                                          # at one commit
    drift_app(cluster, spec, manifests, *, commit, field_manager="gitops-bot") -> AppResult
    deployed_commit(cluster, app, *, namespace) -> DeployedCommit | None

Whole runs (bot.cluster.runner), never raising for one app::

    with Clusters(targets, concurrency=None) as clusters:                # one Cluster per target
        run_preview(rendered, clusters, *, head=None, base=None, field_manager=..., tooling=...,
                    target_override=None, declared=None, is_ancestor=None) -> RunResult
        run_apply(rendered, clusters, *, commit, field_manager=..., tooling=..., dry_run=False,
                  progress=None, is_ancestor=None, target_override=None, wait=True,
                  declared=None) -> RunResult
        run_drift(rendered, clusters, *, commit, ...) -> RunResult      # Mode.DRIFT

Previews of two commits (offline and live, for the CLI and the bot) are
:mod:`bot.jobs.compare`'s; drift of a repository's apps, :mod:`bot.jobs.drift`'s.

``spec`` is the manifest engine's AppSpec (name, target, namespace, create_namespace, prune,
force_conflicts, health_timeout, stuck_pod_timeout, line); ``manifests`` its rendered
:class:`bot.model.Manifest` list. ``declared`` (:class:`Declarations`, from the same commit's
rendering of every app on the targets) and ``is_ancestor`` decide about objects another app's
ApplySet holds (:mod:`bot.cluster.owners`): pass the same to a commit's preview and deploy. Every error is
collected per object into the AppResult (``ObjectError.reason`` is the API Status reason or the
``reason`` of the :class:`KubeError` subclass, ``transient`` says whether a retry may help);
nothing here raises for one bad object.

Modules: ``targets`` (which cluster, what may be touched), ``client`` (credentials, discovery,
requests one at a time through the official client), ``batch`` (requests in bulk through
libcurl), ``plan`` (rendered objects prepared for sending, live reads), ``phases`` (the phase
runner preview and apply share), ``owners`` (objects another app's ApplySet holds),
``preview``/``apply``/``drift``, ``applyset``, ``health`` (pure judgements) and ``rollout``
(the health wait, naming stuck pods), ``runner`` (whole runs).
"""

from __future__ import annotations

from bot.cluster.apply import DeployedCommit, apply_app, deployed_commit, wait_healthy
from bot.cluster.applyset import DEFAULT_TOOLING, ApplySet, applyset_id
from bot.cluster.client import Cluster, Resource
from bot.cluster.drift import drift_app
from bot.cluster.errors import (
    ApiError,
    ApplySetError,
    KubeError,
    NotAllowedError,
    OlderCommitError,
    TargetError,
    UnknownTargetError,
)
from bot.cluster.owners import Declarations
from bot.cluster.preview import DEFAULT_FIELD_MANAGER, preview_app
from bot.cluster.runner import Clusters, run_apply, run_drift, run_preview
from bot.cluster.targets import DEFAULT_TARGET, Target, Targets

__all__ = [
    "DEFAULT_FIELD_MANAGER",
    "DEFAULT_TARGET",
    "DEFAULT_TOOLING",
    "ApiError",
    "ApplySet",
    "ApplySetError",
    "Cluster",
    "Clusters",
    "Declarations",
    "DeployedCommit",
    "KubeError",
    "NotAllowedError",
    "OlderCommitError",
    "Resource",
    "Target",
    "TargetError",
    "Targets",
    "UnknownTargetError",
    "apply_app",
    "applyset_id",
    "deployed_commit",
    "drift_app",
    "preview_app",
    "run_apply",
    "run_drift",
    "run_preview",
    "wait_healthy",
]
