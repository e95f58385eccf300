"""Deploy: ordered server-side apply, ApplySet bookkeeping, prune, health wait.

Order (see :mod:`bot.cluster.plan`): Namespaces and CRDs first, waiting until each CRD is
Established; then the ApplySet parent is updated to cover the old and the new kinds (kubectl's
"superset" step, so an interrupted deploy never orphans objects); then the other cluster-scoped
objects; then the namespaced ones. Each phase is one run of :func:`bot.cluster.phases.run_phase`
(the preview's runner), its objects applied in parallel.

With ``createNamespace: true`` the app's Namespace is applied before anything else (no
member of the set: never pruned); without it, a missing namespace stops the deploy before
anything is applied, with one error saying so. An object another app's ApplySet holds is taken
over or refused before it is sent (:mod:`bot.cluster.owners`).

Prune runs only when every object applied: a partial failure never deletes anything. Pruned
objects are deleted in reverse phase order (namespaced first, Namespaces and CRDs last); a
member that another app declares at this commit is released instead (left for that app to take
over). Then the parent is narrowed to the kinds and namespaces now in the set (and those of
released members still carrying its label) and the deployed commit is recorded on it. Last,
the health wait (:mod:`bot.cluster.rollout`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.cluster.applyset import DEFAULT_TOOLING, ApplySet, ParentState, group_kind
from bot.cluster.client import Cluster
from bot.cluster.errors import OLDER_COMMIT, ApiError, ConflictError, KubeError, OlderCommitError
from bot.cluster.owners import Declarations, Owners
from bot.cluster.phases import (
    ObjectOutcome,
    check_parent_allowed,
    discovery_error,
    missing_namespace,
    prune_candidates,
    read_parent,
    run_phase,
)
from bot.cluster.plan import (
    CRD_KIND,
    PHASE_CLUSTER,
    PHASE_FOUNDATION,
    PHASE_NAMES,
    PHASE_NAMESPACED,
    AppSpecLike,
    Item,
    LiveIndex,
    app_namespace,
    change_order,
    phase_of,
    prepare,
)
from bot.cluster.preview import (
    DEFAULT_FIELD_MANAGER,
    IsAncestor,
    namespace_field_manager,
    preview_app,
)
from bot.cluster.rollout import Progress, wait_healthy
from bot.diff import object_diff
from bot.model import (
    AppResult,
    Change,
    Manifest,
    Obj,
    ObjectChange,
    ObjectError,
    ObjectRef,
)

NOT_PRUNED_NOTE = "prune skipped: {count} object(s) failed to apply, nothing was deleted"
CRD_NOT_ESTABLISHED = "CustomResourceDefinition {name} is not Established after {timeout:g}s"
PARENT_FAILED = "cannot update the ApplySet parent {parent}: {message}"
CRD_NOT_APPLIED = "not applied: the CustomResourceDefinition of this change that defines it did not become available"
CRD_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class DeployedCommit:
    """What the ApplySet parent records about the last deploy of an app."""

    commit: str
    applied_at: str | None


def _noop(step: str, done: int, total: int) -> None:
    return None


def deployed_commit(
    cluster: Cluster, app: str, *, namespace: str | None, tooling: str = DEFAULT_TOOLING
) -> DeployedCommit | None:
    """The commit an app was last deployed from on ``cluster``, or None if never."""
    state = read_parent(cluster, ApplySet.for_app(app, namespace or "default", tooling=tooling))
    if not state.commit:
        return None
    return DeployedCommit(commit=state.commit, applied_at=state.applied_at)


@dataclass
class _Deploy:
    """One app's deploy in progress: what every step reads and adds to."""

    cluster: Cluster
    spec: AppSpecLike
    applyset: ApplySet
    field_manager: str
    report: Progress
    result: AppResult
    live: LiveIndex
    owners: Owners
    applied: list[ObjectOutcome] = field(default_factory=list)
    failed: int = 0

    def run_phase(self, phase: int, items: list[Item], *, field_manager: str | None = None) -> None:
        if not items:
            return
        self.live.fetch(items)
        label = f"applying {PHASE_NAMES[phase]}"
        self.report(label, 0, len(items))
        outcomes = run_phase(
            self.cluster,
            items,
            self.live,
            field_manager=field_manager or self.field_manager,
            force=self.spec.force_conflicts,
            dry_run=False,
            progress=lambda done, total: self.report(label, done, total),
            owners=self.owners,
        )
        for outcome in outcomes:
            outcome.add_to(self.result)
            if outcome.applied:
                self.applied.append(outcome)
            elif outcome.error is not None:
                self.failed += 1

    def write_parent(self, *, group_kinds: set[str], namespaces: set[str]) -> bool:
        """The parent's ApplySet annotations; False (and an app error) when refused."""
        body = self.applyset.parent_object(group_kinds=group_kinds, namespaces=namespaces)
        secrets = self.cluster.resource("v1", "Secret")
        manager = self.applyset.parent_field_manager()
        try:
            try:
                self.cluster.apply(secrets, body, field_manager=manager)
            except ConflictError:
                # kubectl does the same: the parent's ApplySet fields belong to the set's tooling
                self.cluster.apply(secrets, body, field_manager=manager, force=True)
        except KubeError as exc:
            self.parent_failed(exc)
            return False
        return True

    def parent_failed(self, exc: KubeError) -> None:
        error = exc.to_object_error()
        error.message = PARENT_FAILED.format(parent=self.applyset.label, message=exc)
        self.result.errors.append(error)


def apply_app(
    cluster: Cluster,
    spec: AppSpecLike,
    manifests: Sequence[Manifest],
    *,
    commit: str | None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    dry_run: bool = False,
    progress: Progress | None = None,
    is_ancestor: IsAncestor | None = None,
    tooling: str = DEFAULT_TOOLING,
    wait: bool = True,
    declared: Declarations | None = None,
) -> AppResult:
    """Apply one app's rendered objects to ``cluster`` (mode DEPLOY).

    ``dry_run`` applies nothing: the result is the live preview (every object dry-run on the
    server, prunes listed). ``is_ancestor`` enables the older-commit refusal: when the parent
    records commit L and ``is_ancestor(commit, L)`` with ``commit != L``, nothing is applied
    (and a dry run says so too: it shows what the real run would do). ``declared`` (who
    declares what at ``commit``, :class:`Declarations`) and ``is_ancestor`` decide about
    objects another app's ApplySet holds (:mod:`bot.cluster.owners`); without ``declared``
    each such object is a conflict and no member is released."""
    report = progress or _noop
    result = AppResult(name=spec.name, target=cluster.target.name, commit=commit)
    applyset = ApplySet.for_app(spec.name, app_namespace(spec), tooling=tooling)
    try:
        check_parent_allowed(cluster, applyset)
        unreachable = discovery_error(cluster)
        if unreachable is not None:
            result.errors.append(unreachable)
            return result
        parent = read_parent(cluster, applyset)
        if (
            commit
            and parent.commit
            and is_ancestor is not None
            and parent.commit != commit
            and is_ancestor(commit, parent.commit)
        ):
            raise OlderCommitError(OLDER_COMMIT.format(commit=commit, live=parent.commit))
    except KubeError as exc:
        result.errors.append(exc.to_object_error())
        return result
    if dry_run:
        return preview_app(
            cluster,
            spec,
            manifests,
            field_manager=field_manager,
            commit=commit,
            tooling=tooling,
            declared=declared,
            is_ancestor=is_ancestor,
        )

    prepared = prepare(cluster, spec, manifests, applyset)
    result.errors.extend(prepared.errors)
    items = prepared.items
    missing = missing_namespace(cluster, spec, items)
    if missing is not None:  # nothing can be applied: say why once, not per object
        result.errors.append(missing)
        return result
    owners = Owners(
        cluster, applyset, app=spec.name, declared=declared, commit=commit, is_ancestor=is_ancestor
    )
    deploy = _Deploy(
        cluster, spec, applyset, field_manager, report, result, LiveIndex(cluster), owners
    )
    deploy.failed = len(prepared.errors)

    # Phase 0: the app's own namespace (createNamespace), namespaces and CRDs, then wait for
    # the CRDs to serve their kinds.
    deploy.run_phase(
        PHASE_FOUNDATION,
        [i for i in items if not i.member],
        field_manager=namespace_field_manager(field_manager),
    )
    deploy.run_phase(
        PHASE_FOUNDATION, [i for i in items if i.phase == PHASE_FOUNDATION and i.member]
    )
    crds = [o.answer for o in deploy.applied if o.item.ref.kind == CRD_KIND and o.answer]
    if crds:
        deploy.failed += _wait_established(cluster, crds, result)
        cluster.invalidate_discovery()
    if any(i.pending_kind for i in items):
        deploy.failed += _resolve_pending(cluster, items, result)

    # The parent must cover old and new kinds before any member is written.
    new_gks = prepared.group_kinds()
    new_nss = prepared.namespaces()
    if not deploy.write_parent(
        group_kinds=set(parent.group_kinds) | new_gks, namespaces=set(parent.namespaces) | new_nss
    ):
        return result

    rest = [i for i in items if i.phase != PHASE_FOUNDATION and i.resource is not None]
    deploy.run_phase(PHASE_CLUSTER, [i for i in rest if i.phase == PHASE_CLUSTER])
    deploy.run_phase(PHASE_NAMESPACED, [i for i in rest if i.phase == PHASE_NAMESPACED])

    if deploy.failed:
        if spec.prune:
            result.notes.append(NOT_PRUNED_NOTE.format(count=deploy.failed))
    else:
        kept: list[ObjectRef] = []  # released members: still in the set until taken over
        pruned = _prune(deploy, parent, items, kept) if spec.prune else True
        result.pruned = spec.prune and pruned
        narrowed = not (pruned and spec.prune) or deploy.write_parent(
            group_kinds=new_gks | {group_kind(r.api_version, r.kind) for r in kept},
            namespaces=new_nss | {r.namespace for r in kept if r.namespace},
        )
        if commit and narrowed:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                cluster.apply(
                    cluster.resource("v1", "Secret"),
                    applyset.commit_patch(commit=commit, applied_at=stamp),
                    field_manager=field_manager,
                    force=True,
                )
            except KubeError as exc:
                deploy.parent_failed(exc)

    result.changes.sort(key=change_order)
    if wait:
        result.health = wait_healthy(
            cluster,
            [(o.item.resource, o.item.ref) for o in deploy.applied if o.item.resource is not None],
            timeout=float(spec.health_timeout),
            progress=report,
            stuck_timeout=float(spec.stuck_pod_timeout),
        )
    return result


def _wait_established(cluster: Cluster, crds: list[Obj], result: AppResult) -> int:
    """Wait until every applied CRD is Established; returns the number that never were."""
    res = cluster.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")

    def established(obj: Obj | ApiError | None) -> bool:
        if not isinstance(obj, dict):
            return False
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Established" and cond.get("status") == "True":
                return True
        return False

    pending = [str((c.get("metadata") or {}).get("name")) for c in crds if not established(c)]
    deadline = time.monotonic() + CRD_WAIT_SECONDS
    delay = 0.05
    while pending and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
        now = cluster.get_many([(res, None, name) for name in pending])
        pending = [name for name, obj in zip(pending, now, strict=True) if not established(obj)]
    for name in pending:
        ref = ObjectRef("apiextensions.k8s.io/v1", CRD_KIND, None, name)
        result.errors.append(
            ObjectError(
                message=CRD_NOT_ESTABLISHED.format(name=name, timeout=CRD_WAIT_SECONDS),
                ref=ref,
                reason="NotEstablished",
                transient=True,
            )
        )
    return len(pending)


def _resolve_pending(cluster: Cluster, items: list[Item], result: AppResult) -> int:
    """Resolve the kinds whose CRDs were just applied; returns how many are still unknown."""
    failed = 0
    for item in items:
        if not item.pending_kind:
            continue
        try:
            item.resource = cluster.resource(item.ref.api_version, item.ref.kind)
            item.pending_kind = False
        except ApiError as exc:
            err = item.error(exc)
            err.message = f"{exc.message} ({CRD_NOT_APPLIED})"
            result.errors.append(err)
            failed += 1
    return failed


def _prune(deploy: _Deploy, parent: ParentState, items: list[Item], kept: list[ObjectRef]) -> bool:
    """Delete the set's members that Git no longer declares; returns whether all went. The
    members another app declares now are released (a note each) and added to ``kept``."""
    cluster, result = deploy.cluster, deploy.result
    plan = prune_candidates(
        cluster, deploy.applyset, parent, items, deploy.live, owners=deploy.owners
    )
    doomed, errors = plan.doomed, plan.errors
    result.errors.extend(errors)
    for ref, note in plan.released:
        kept.append(ref)
        result.notes.append(note)
    ok = not errors
    total = len(doomed)
    if total:
        deploy.report("pruning", 0, total)
    done = 0
    for phase in (PHASE_NAMESPACED, PHASE_CLUSTER, PHASE_FOUNDATION):
        batch = [
            (res, obj, ref)
            for res, obj, ref in doomed
            if phase_of(res.api_version, res.kind, namespaced=res.namespaced) == phase
        ]
        if not batch:
            continue
        outcomes = cluster.delete_many([(res, ref.namespace, ref.name) for res, _o, ref in batch])
        for (_res, obj, ref), error in zip(batch, outcomes, strict=True):
            if error is not None:
                ok = False
                result.errors.append(error.to_object_error(ref))
            else:
                result.changes.append(
                    ObjectChange(
                        ref=ref, change=Change.DELETE, diff=object_diff(obj, None, ref=ref)
                    )
                )
        done += len(batch)
        deploy.report("pruning", done, total)
    return ok


__all__ = [
    "DeployedCommit",
    "IsAncestor",
    "Progress",
    "apply_app",
    "deployed_commit",
    "wait_healthy",
]
