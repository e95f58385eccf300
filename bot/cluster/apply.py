"""Deploy: ordered server-side apply, ApplySet bookkeeping, prune, health wait.

Order (see :mod:`bot.cluster.plan`): Namespaces and CRDs first, waiting until each CRD is
Established; then the ApplySet parent is updated to cover the old and the new kinds (kubectl's
"superset" step, so an interrupted deploy never orphans objects); then the other cluster-scoped
objects; then the namespaced ones. Each phase is one run of :func:`bot.cluster.phases.run_phase`
(the preview's runner), its objects applied in parallel.

Prune runs only when every object applied: a partial failure never deletes anything. Pruned
objects are deleted in reverse phase order (namespaced first, Namespaces and CRDs last). Then
the parent is narrowed to the kinds and namespaces now in the set and the deployed commit is
recorded on it. Last, the health wait (:mod:`bot.cluster.health`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.cluster import health as health_mod
from bot.cluster.applyset import DEFAULT_TOOLING, ApplySet, ParentState
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import OLDER_COMMIT, ApiError, ConflictError, KubeError, OlderCommitError
from bot.cluster.phases import (
    ObjectOutcome,
    check_parent_allowed,
    discovery_error,
    prune_candidates,
    read_parent,
    run_phase,
)
from bot.cluster.plan import (
    CRD_KIND,
    LIST_THRESHOLD,
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
from bot.cluster.preview import DEFAULT_FIELD_MANAGER, preview_app
from bot.diff import object_diff
from bot.model import (
    AppResult,
    Change,
    Health,
    Manifest,
    Obj,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    ObjectRef,
)

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as objects finish (for the CLI's progress line)."""

IsAncestor = Callable[[str, str], bool]
"""``is_ancestor(old, new)``: whether commit ``old`` is an ancestor of commit ``new``."""

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
    applied: list[ObjectOutcome] = field(default_factory=list)
    failed: int = 0

    def run_phase(self, phase: int, items: list[Item]) -> None:
        if not items:
            return
        self.live.fetch(items)
        label = f"applying {PHASE_NAMES[phase]}"
        self.report(label, 0, len(items))
        outcomes = run_phase(
            self.cluster,
            items,
            self.live,
            field_manager=self.field_manager,
            force=self.spec.force_conflicts,
            dry_run=False,
            progress=lambda done, total: self.report(label, done, total),
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
) -> AppResult:
    """Apply one app's rendered objects to ``cluster`` (mode DEPLOY).

    ``dry_run`` applies nothing: the result is the live preview (every object dry-run on the
    server, prunes listed). ``is_ancestor`` enables the older-commit refusal: when the parent
    records commit L and ``is_ancestor(commit, L)`` with ``commit != L``, nothing is applied
    (and a dry run says so too: it shows what the real run would do)."""
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
            cluster, spec, manifests, field_manager=field_manager, commit=commit, tooling=tooling
        )

    prepared = prepare(cluster, spec, manifests, applyset)
    result.errors.extend(prepared.errors)
    items = prepared.items
    deploy = _Deploy(cluster, spec, applyset, field_manager, report, result, LiveIndex(cluster))
    deploy.failed = len(prepared.errors)

    # Phase 0: namespaces and CRDs, then wait for the CRDs to serve their kinds.
    deploy.run_phase(PHASE_FOUNDATION, [i for i in items if i.phase == PHASE_FOUNDATION])
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
        pruned = _prune(deploy, parent, items) if spec.prune else True
        result.pruned = spec.prune and pruned
        narrowed = not (pruned and spec.prune) or deploy.write_parent(
            group_kinds=new_gks, namespaces=new_nss
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


def _prune(deploy: _Deploy, parent: ParentState, items: list[Item]) -> bool:
    """Delete the set's members that Git no longer declares; returns whether all went."""
    cluster, result = deploy.cluster, deploy.result
    doomed, errors = prune_candidates(cluster, deploy.applyset, parent, items, deploy.live)
    result.errors.extend(errors)
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


def _look(
    cluster: Cluster, waiting: dict[ObjectRef, Resource], pending: list[ObjectRef]
) -> list[tuple[ObjectRef, health_mod.Verdict]]:
    """The current verdict of each pending object: one LIST per resource and namespace with
    many pending objects, one GET each otherwise. A failed read keeps the object waiting."""
    groups: dict[tuple[Resource, str | None], list[ObjectRef]] = {}
    for ref in pending:
        groups.setdefault((waiting[ref], ref.namespace), []).append(ref)

    def verdict_of(obj: Obj | ApiError | None) -> health_mod.Verdict:
        if isinstance(obj, ApiError):
            return health_mod.Verdict(Health.PROGRESSING, obj.reason or "Error", obj.message)
        if obj is None:
            return health_mod.Verdict(Health.DEGRADED, "NotFound", "the object is gone")
        return health_mod.judge(obj)

    lists = [key for key, refs in groups.items() if len(refs) >= LIST_THRESHOLD]
    singles = [ref for key, refs in groups.items() if len(refs) < LIST_THRESHOLD for ref in refs]
    looked: list[tuple[ObjectRef, health_mod.Verdict]] = []
    for key, listed in zip(lists, cluster.list_many([(*k, None) for k in lists]), strict=True):
        if isinstance(listed, ApiError):
            looked += [(ref, verdict_of(listed)) for ref in groups[key]]
            continue
        by_name = {str((o.get("metadata") or {}).get("name")): o for o in listed}
        looked += [(ref, verdict_of(by_name.get(ref.name))) for ref in groups[key]]
    found = cluster.get_many([(waiting[ref], ref.namespace, ref.name) for ref in singles])
    looked += [(ref, verdict_of(obj)) for ref, obj in zip(singles, found, strict=True)]
    return looked


def wait_healthy(
    cluster: Cluster,
    objects: Sequence[tuple[Resource, ObjectRef]],
    *,
    timeout: float,
    progress: Progress | None = None,
) -> list[ObjectHealth]:
    """Poll the workloads among ``objects`` until each is healthy or degraded, or ``timeout``
    seconds pass (then the rest end PROGRESSING with reason Timeout)."""
    report = progress or _noop
    waiting = {ref: res for res, ref in objects if health_mod.needs_wait(ref.kind, ref.api_version)}
    verdicts: dict[ObjectRef, health_mod.Verdict] = {}
    final: dict[ObjectRef, health_mod.Verdict] = {}
    total = len(waiting)
    if not total:
        return []
    report("waiting for health", 0, total)
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = 0.1
    while True:
        pending = [ref for ref in waiting if ref not in final]
        for ref, verdict in _look(cluster, waiting, pending):
            verdicts[ref] = verdict
            if verdict.final:
                final[ref] = verdict
        report("waiting for health", len(final), total)
        if len(final) == total or time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        delay = min(delay * 1.5, 2.0)
    out = []
    for ref in sorted(waiting):
        verdict = final.get(ref) or health_mod.timed_out(verdicts[ref], timeout)
        out.append(
            ObjectHealth(
                ref=ref, health=verdict.health, reason=verdict.reason, message=verdict.message
            )
        )
    return out


__all__ = [
    "DeployedCommit",
    "IsAncestor",
    "Progress",
    "apply_app",
    "deployed_commit",
    "wait_healthy",
]
