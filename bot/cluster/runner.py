"""Whole runs over many apps: connect once per target, run each app, collect a RunResult.

The CLI and the workers call these; they take the manifest engine's rendered apps (anything
with ``spec``, ``manifests``, ``errors`` and ``notes``) and never raise for one app: an unknown
target, a render error or an unreachable cluster ends up in that app's result.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from bot.cluster.apply import IsAncestor, Progress, apply_app
from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.client import DEFAULT_CONCURRENCY, Cluster
from bot.cluster.drift import drift_app
from bot.cluster.errors import KubeError
from bot.cluster.owners import Declarations
from bot.cluster.plan import AppSpecLike
from bot.cluster.preview import DEFAULT_FIELD_MANAGER, preview_app
from bot.cluster.targets import Targets
from bot.diff import redact_values, rendered_secret_values
from bot.metrics import count_applied
from bot.model import AppResult, Manifest, Mode, ObjectError, RunResult

RENDER_FAILED_NOTE = "not sent to the cluster: the app did not render cleanly"
NOT_DEPLOYABLE_NOTE = (
    "not previewed: a deploy does not apply an app that does not render cleanly, so this "
    "change would apply nothing of it; fix the errors above to see its diff"
)
UNEXPECTED = "unexpected error ({kind}) while handling this app: {error}"


log = logging.getLogger("gitops_bot.cluster")


class RenderedLike(Protocol):
    """The manifest engine's RenderedApp, as far as the cluster engine reads it."""

    @property
    def spec(self) -> AppSpecLike: ...
    @property
    def manifests(self) -> Sequence[Manifest]: ...
    @property
    def errors(self) -> Sequence[Any]: ...
    @property
    def notes(self) -> Sequence[str]: ...


class Clusters:
    """One :class:`Cluster` per target name, connected on first use, closed together."""

    def __init__(self, targets: Targets, *, concurrency: int | None = None) -> None:
        self.targets = targets
        self.concurrency = concurrency or DEFAULT_CONCURRENCY
        self._open: dict[str, Cluster] = {}

    def get(self, name: str) -> Cluster:
        """The cluster of target ``name`` (TargetError when unknown or unloadable)."""
        if name not in self._open:
            self._open[name] = Cluster(self.targets[name], concurrency=self.concurrency)
        return self._open[name]

    def close(self) -> None:
        for cluster in self._open.values():
            cluster.close()
        self._open.clear()

    def __enter__(self) -> Clusters:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _render_errors(rendered: RenderedLike) -> list[ObjectError]:
    out: list[ObjectError] = []
    for err in rendered.errors:
        if isinstance(err, ObjectError):
            out.append(err)
        else:
            out.append(
                ObjectError(
                    message=str(getattr(err, "message", err)),
                    file=getattr(err, "file", None),
                    line=getattr(err, "line", None),
                    reason="RenderError",
                )
            )
    return out


def _run(
    rendered: Sequence[RenderedLike],
    clusters: Clusters,
    mode: Mode,
    one: Callable[[Cluster, RenderedLike], AppResult],
    *,
    target_override: str | None = None,
    skip_on_render_errors: bool,
    skipped_note: str = RENDER_FAILED_NOTE,
) -> RunResult:
    run = RunResult(mode=mode)
    for app in rendered:
        target = target_override or app.spec.target
        errors = _render_errors(app)
        if errors and skip_on_render_errors:
            result = AppResult(name=app.spec.name, target=target, errors=errors)
            result.notes.extend([*app.notes, skipped_note])
            run.apps.append(result)
            continue
        try:
            cluster = clusters.get(target)
            result = one(cluster, app)
        except KubeError as exc:
            result = AppResult(name=app.spec.name, target=target)
            result.errors.append(exc.to_object_error())
        except Exception as exc:
            # A bug must cost one app its result, not the whole run its report (the other
            # apps may already be applied).
            # The stack, not the message: a message may quote a value from a manifest.
            log.error(
                "unexpected %s in app %s:\n%s",
                type(exc).__name__,
                app.spec.name,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            result = AppResult(name=app.spec.name, target=target)
            result.errors.append(
                ObjectError(
                    UNEXPECTED.format(kind=type(exc).__name__, error=exc), reason="Internal"
                )
            )
        result.errors[:0] = errors
        result.notes[:0] = list(app.notes)
        run.apps.append(result)
    # Server errors and controller messages can quote what was sent, Secret values included.
    return redact_values(run, rendered_secret_values(m for app in rendered for m in app.manifests))


def run_preview(
    rendered: Sequence[RenderedLike],
    clusters: Clusters,
    *,
    head: str | None = None,
    base: str | None = None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str = DEFAULT_TOOLING,
    target_override: str | None = None,
    declared: Declarations | None = None,
    is_ancestor: IsAncestor | None = None,
) -> RunResult:
    """The live preview of every rendered app (Mode.LIVE). ``target_override`` sends every
    app to that target (the CLI's ``--kubeconfig``). ``declared`` and ``is_ancestor``: as for
    :func:`run_apply` (who declares what at ``head``; pass the same the deploy will get, so
    objects moving between apps preview as the merge moves them)."""

    def one(cluster: Cluster, app: RenderedLike) -> AppResult:
        return preview_app(
            cluster,
            app.spec,
            app.manifests,
            field_manager=field_manager,
            commit=head,
            tooling=tooling,
            declared=declared,
            is_ancestor=is_ancestor,
        )

    # An app with render errors is previewed as the deploy treats it: nothing of it is applied.
    run = _run(
        rendered,
        clusters,
        Mode.LIVE,
        one,
        target_override=target_override,
        skip_on_render_errors=True,
        skipped_note=NOT_DEPLOYABLE_NOTE,
    )
    run.head, run.base = head, base
    return run


def run_apply(
    rendered: Sequence[RenderedLike],
    clusters: Clusters,
    *,
    commit: str | None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str = DEFAULT_TOOLING,
    dry_run: bool = False,
    progress: Callable[[str], Progress] | None = None,
    is_ancestor: IsAncestor | None = None,
    target_override: str | None = None,
    wait: bool = True,
    declared: Declarations | None = None,
) -> RunResult:
    """Deploy every rendered app (Mode.DEPLOY); an app with render errors is not applied at
    all (a partial set would prune what failed to render). ``progress(app)`` returns the
    progress callback for that app.

    ``declared`` is who declares what at ``commit`` (:meth:`Declarations.of` over every app
    on the targets concerned, not only those deployed here) and, with ``is_ancestor``, lets
    an object move between apps or an app be renamed without a conflict
    (:mod:`bot.cluster.owners`); without it, objects another app's set holds are conflicts."""
    run = _run(
        rendered,
        clusters,
        Mode.DEPLOY,
        lambda cluster, app: apply_app(
            cluster,
            app.spec,
            app.manifests,
            commit=commit,
            field_manager=field_manager,
            tooling=tooling,
            dry_run=dry_run,
            progress=progress(app.spec.name) if progress else None,
            is_ancestor=is_ancestor,
            wait=wait,
            declared=declared,
        ),
        target_override=target_override,
        skip_on_render_errors=True,
    )
    run.head = commit
    if not dry_run:
        count_applied(run)  # gitops_objects_applied_total / _pruned_total
    return run


def run_drift(
    rendered: Sequence[RenderedLike],
    clusters: Clusters,
    *,
    commit: str | None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str = DEFAULT_TOOLING,
    target_override: str | None = None,
) -> RunResult:
    """Drift of every rendered app against ``commit`` (Mode.DRIFT)."""
    run = _run(
        rendered,
        clusters,
        Mode.DRIFT,
        lambda cluster, app: drift_app(
            cluster,
            app.spec,
            app.manifests,
            commit=commit,
            field_manager=field_manager,
            tooling=tooling,
        ),
        target_override=target_override,
        skip_on_render_errors=False,
    )
    run.head = commit
    return run
