"""Deploy: ordered server-side apply, ApplySet bookkeeping, prune, health wait.

Order (see :mod:`bot.cluster.plan`): Namespaces and CRDs first, waiting until each CRD is
Established; then the ApplySet parent is updated to cover the old and the new kinds (kubectl's
"superset" step, so an interrupted deploy never orphans objects); then the other cluster-scoped
objects; then the namespaced ones. Objects of one phase are applied in parallel.

Prune runs only when every object applied: a partial failure never deletes anything. Pruned
objects are deleted in reverse phase order (namespaced first, Namespaces and CRDs last). Then
the parent is narrowed to the kinds and namespaces now in the set and the deployed commit is
recorded on it. Last, the health wait (:mod:`bot.cluster.health`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.cluster import health as health_mod
from bot.cluster.applyset import (
    DEFAULT_TOOLING,
    ApplySet,
    ParentState,
    group_kind,
)
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import (
    OLDER_COMMIT,
    ApiError,
    ConflictError,
    OlderCommitError,
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
    list_members,
    phase_of,
    prepare,
)
from bot.cluster.preview import (
    DEFAULT_FIELD_MANAGER,
    describe,
    discovery_error,
    preview_app,
    prune_refusal,
    recreate_allowed,
)
from bot.diff import object_diff
from bot.errors import ClusterError
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
RECREATED_NOTE = "{ref} was deleted and re-created to change an immutable field"
CRD_NOT_ESTABLISHED = "CustomResourceDefinition {name} is not Established after {timeout:g}s"
PARENT_FAILED = "cannot update the ApplySet parent {parent}: {message}"
SKIPPED_AFTER_FAILURE = "not applied: {reason}"

CRD_NOT_APPLIED = "not applied: the CustomResourceDefinition of this change that defines it did not become available"
CRD_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class DeployedCommit:
    """What the ApplySet parent records about the last deploy of an app."""

    commit: str
    applied_at: str | None


def _noop(step: str, done: int, total: int) -> None:
    return None


def _secret_resource(cluster: Cluster) -> Resource:
    return cluster.resource("v1", "Secret")


def read_parent(cluster: Cluster, applyset: ApplySet) -> ParentState:
    """The live parent's state (raises ApplySetError for foreign tooling, ApiError on I/O)."""
    return applyset.parse_parent(
        cluster.get(_secret_resource(cluster), applyset.namespace, applyset.name)
    )


def deployed_commit(
    cluster: Cluster, app: str, *, namespace: str | None, tooling: str = DEFAULT_TOOLING
) -> DeployedCommit | None:
    """The commit an app was last deployed from on ``cluster``, or None if never."""
    applyset = ApplySet.for_app(app, namespace or "default", tooling=tooling)
    state = read_parent(cluster, applyset)
    if not state.commit:
        return None
    return DeployedCommit(commit=state.commit, applied_at=state.applied_at)


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
        cluster.target.check(
            kind="Secret", namespace=applyset.namespace, name=applyset.name, label=applyset.label
        )
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
    except ClusterError as exc:
        result.errors.append(_app_error(exc))
        return result
    if dry_run:
        return preview_app(
            cluster, spec, manifests, field_manager=field_manager, commit=commit, tooling=tooling
        )

    prepared = prepare(cluster, spec, manifests, applyset)
    result.errors.extend(prepared.errors)
    failed = len(prepared.errors)
    items = prepared.items
    live = LiveIndex(cluster)
    applied: list[tuple[Item, Obj | None]] = []  # None: a creation's answer, never read

    def run_phase(phase: int, phase_items: list[Item]) -> int:
        if not phase_items:
            return 0
        live.fetch([i for i in phase_items if i.resource is not None])
        label = f"applying {PHASE_NAMES[phase]}"
        total = len(phase_items)
        report(label, 0, total)
        outcomes: list[_Outcome | None] = [None] * total
        done = 0

        def settle(position: int, outcome: _Outcome) -> None:
            nonlocal done
            outcomes[position] = outcome
            done += 1
            if done == total or done % 50 == 0:
                report(label, done, total)

        sending: list[tuple[int, Item, Obj | None]] = []
        jobs: list[tuple[Resource, Obj]] = []
        for position, item in enumerate(phase_items):
            assert item.resource is not None
            fetch_error = live.errors.get(item.key)
            if fetch_error is not None:
                settle(position, (None, False, None, item.error(fetch_error), None))
            else:
                sending.append((position, item, live.get(item)))
                jobs.append((item.resource, item.obj))
        recreate: list[tuple[int, Item, Obj | None]] = []
        answers = cluster.apply_many(
            jobs,
            field_manager=field_manager,
            force=spec.force_conflicts,
            # a creation's answer is read only for a CRD (its Established condition)
            want=lambda n: sending[n][2] is not None or sending[n][1].ref.kind == CRD_KIND,
        )
        for (position, item, before), answer in zip(sending, answers, strict=True):
            if isinstance(answer, ApiError):
                if answer.immutable and recreate_allowed(item.obj):
                    recreate.append((position, item, before))
                    continue
                err = item.error(answer)
                err.message = describe(answer)
                settle(position, (None, False, None, err, None))
            else:
                settle(position, _applied(item, before, answer, None))

        def again(job: tuple[int, Item, Obj | None]) -> tuple[int, _Outcome]:
            position, item, before = job
            try:
                after = _recreate(cluster, item, field_manager, spec.force_conflicts)
            except ApiError as exc:
                return position, (None, False, None, item.error(exc), None)
            return position, _applied(item, before, after, RECREATED_NOTE.format(ref=item.ref))

        for position, outcome in cluster.map(again, recreate):
            settle(position, outcome)
        errors = 0
        for item, slot in zip(phase_items, outcomes, strict=True):
            assert slot is not None
            change, ok, obj, error, note = slot
            if change is not None:
                result.changes.append(change)
            if ok:
                applied.append((item, obj))
            if error is not None:
                result.errors.append(error)
                errors += 1
            if note:
                result.notes.append(note)
        return errors

    # Phase 0: namespaces and CRDs, then wait for the CRDs to serve their kinds.
    foundation = [i for i in items if i.phase == PHASE_FOUNDATION]
    failed += run_phase(PHASE_FOUNDATION, foundation)
    crds = [obj for item, obj in applied if item.ref.kind == CRD_KIND and obj is not None]
    if crds:
        failed += _wait_established(cluster, crds, items, result)
        cluster.invalidate_discovery()
    if any(i.pending_kind for i in items):
        failed += _resolve_pending(cluster, items, result)

    # The parent must cover old and new kinds before any member is written.
    new_gks = {i.group_kind for i in items}
    new_nss = {i.ref.namespace for i in items if i.ref.namespace}
    try:
        _write_parent(
            cluster,
            applyset,
            group_kinds=parent.group_kinds | new_gks,
            namespaces=parent.namespaces | new_nss,
        )
    except ClusterError as exc:
        result.errors.append(
            _app_error(exc, PARENT_FAILED.format(parent=applyset.label, message=exc))
        )
        return result

    rest = [i for i in items if i.phase != PHASE_FOUNDATION and i.resource is not None]
    failed += run_phase(PHASE_CLUSTER, [i for i in rest if i.phase == PHASE_CLUSTER])
    failed += run_phase(PHASE_NAMESPACED, [i for i in rest if i.phase == PHASE_NAMESPACED])

    if failed:
        if spec.prune:
            result.notes.append(NOT_PRUNED_NOTE.format(count=failed))
    else:
        prune_ok = True
        if spec.prune:
            prune_ok = _prune(cluster, applyset, parent, items, live, result, report)
            result.pruned = prune_ok
        try:
            if prune_ok and spec.prune:
                _write_parent(cluster, applyset, group_kinds=new_gks, namespaces=new_nss)
            if commit:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                cluster.apply(
                    _secret_resource(cluster),
                    applyset.commit_patch(commit=commit, applied_at=stamp),
                    field_manager=field_manager,
                    force=True,
                )
        except ClusterError as exc:
            result.errors.append(
                _app_error(exc, PARENT_FAILED.format(parent=applyset.label, message=exc))
            )

    result.changes.sort(key=change_order)
    if wait:
        result.health = wait_healthy(
            cluster,
            [(item.resource, item.ref) for item, _obj in applied if item.resource is not None],
            timeout=float(spec.health_timeout),
            progress=report,
        )
    return result


def _app_error(exc: ClusterError, message: str | None = None) -> ObjectError:
    if isinstance(exc, ApiError):
        err = exc.to_object_error()
        if message:
            err.message = message
        return err
    reason = {
        "OlderCommitError": "OlderCommit",
        "ApplySetError": "ApplySetConflict",
        "NotAllowedError": "NotAllowed",
        "TargetError": "UnknownTarget",
    }.get(type(exc).__name__)
    return ObjectError(message=message or str(exc), reason=reason)


_Outcome = tuple[ObjectChange | None, bool, Obj | None, ObjectError | None, str | None]
"""(change, applied, answer when read, error, note) of one object."""


def _applied(item: Item, before: Obj | None, after: Obj | None, note: str | None) -> _Outcome:
    # A creation's content is what the preview showed; dumping every created object again
    # would double the deploy's CPU for a diff nobody needs (see docs/clusters.md).
    diff = "" if before is None or after is None else object_diff(before, after, ref=item.ref)
    change = Change.CREATE if before is None else Change.UPDATE if diff else Change.UNCHANGED
    return (
        ObjectChange(ref=item.ref, change=change, diff=diff, source=item.manifest.source),
        True,
        after,
        None,
        note,
    )


def _recreate(cluster: Cluster, item: Item, field_manager: str, force: bool) -> Obj:
    assert item.resource is not None
    res, ns, name = item.resource, item.ref.namespace, item.ref.name
    cluster.delete(res, ns, name)
    # deletion may wait for finalizers; re-creating before it is gone would fail with 409
    deadline = time.monotonic() + 60
    delay = 0.05
    while cluster.get(res, ns, name) is not None:
        if time.monotonic() > deadline:
            raise ApiError(f"{item.ref} was not deleted within 60s", status=0, reason="Timeout")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return cluster.apply(res, item.obj, field_manager=field_manager, force=force)


def _wait_established(
    cluster: Cluster, crds: list[Obj], items: list[Item], result: AppResult
) -> int:
    """Wait until every applied CRD is Established; returns the number that never were."""
    res = cluster.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    names = [str((c.get("metadata") or {}).get("name")) for c in crds]

    def established(obj: Obj | None) -> bool:
        for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Established" and cond.get("status") == "True":
                return True
        return False

    pending = [n for n, c in zip(names, crds, strict=True) if not established(c)]
    deadline = time.monotonic() + CRD_WAIT_SECONDS
    delay = 0.05
    while pending and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
        pending = [n for n in pending if not established(cluster.get(res, None, n))]
    for name in pending:
        ref = ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
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


def _write_parent(
    cluster: Cluster,
    applyset: ApplySet,
    *,
    group_kinds: set[str] | frozenset[str],
    namespaces: set[str] | frozenset[str],
) -> None:
    body = applyset.parent_object(group_kinds=group_kinds, namespaces=namespaces)
    secrets = _secret_resource(cluster)
    manager = applyset.parent_field_manager()
    try:
        cluster.apply(secrets, body, field_manager=manager)
    except ConflictError:
        # kubectl does the same: the parent's ApplySet fields belong to the set's tooling
        cluster.apply(secrets, body, field_manager=manager, force=True)


def _prune(
    cluster: Cluster,
    applyset: ApplySet,
    parent: ParentState,
    items: list[Item],
    live: LiveIndex,
    result: AppResult,
    report: Progress,
) -> bool:
    """Delete the set's members that Git no longer declares; returns whether all went."""
    desired = {i.key for i in items}
    members, errors = list_members(
        cluster,
        applyset,
        group_kinds=parent.group_kinds | {i.group_kind for i in items},
        namespaces=parent.namespaces | {i.ref.namespace for i in items if i.ref.namespace},
        live=live,
    )
    result.errors.extend(errors)
    doomed = []
    for res, obj in members:
        ref = ObjectRef.of(obj)
        if ref.key in desired:
            continue
        refusal = prune_refusal(cluster, ref)
        if refusal is not None:
            errors.append(refusal)
            result.errors.append(refusal)
            continue
        doomed.append((res, obj))
    doomed.sort(
        key=lambda pair: -phase_of(pair[0].api_version, pair[0].kind, namespaced=pair[0].namespaced)
    )
    ok = not errors
    total = len(doomed)
    if total:
        report("pruning", 0, total)
    done = 0
    for phase in (PHASE_NAMESPACED, PHASE_CLUSTER, PHASE_FOUNDATION):
        batch = [
            (res, obj)
            for res, obj in doomed
            if phase_of(res.api_version, res.kind, namespaced=res.namespaced) == phase
        ]

        refs = [ObjectRef.of(obj) for _res, obj in batch]
        outcomes = cluster.delete_many(
            [(res, ref.namespace, ref.name) for (res, _obj), ref in zip(batch, refs, strict=True)]
        )
        for (_res, obj), ref, error in zip(batch, refs, outcomes, strict=True):
            done += 1
            if error is not None:
                ok = False
                result.errors.append(error.to_object_error(ref))
            else:
                result.changes.append(
                    ObjectChange(
                        ref=ref, change=Change.DELETE, diff=object_diff(obj, None, ref=ref)
                    )
                )
        if batch:
            report("pruning", done, total)
    return ok


def _look(
    cluster: Cluster, waiting: dict[ObjectRef, Resource], pending: list[ObjectRef]
) -> list[tuple[ObjectRef, health_mod.Verdict]]:
    """The current verdict of each pending object: one LIST per resource and namespace with
    many pending objects, one GET each otherwise. A failed read keeps the object waiting."""
    groups: dict[tuple[Resource, str | None], list[ObjectRef]] = {}
    for ref in pending:
        groups.setdefault((waiting[ref], ref.namespace), []).append(ref)

    def verdict_of(obj: Obj | None) -> health_mod.Verdict:
        if obj is None:
            return health_mod.Verdict(Health.DEGRADED, "NotFound", "the object is gone")
        return health_mod.judge(obj)

    def failed(exc: ApiError) -> health_mod.Verdict:
        return health_mod.Verdict(Health.PROGRESSING, exc.reason or "Error", exc.message)

    def look_group(
        key: tuple[Resource, str | None],
    ) -> list[tuple[ObjectRef, health_mod.Verdict]]:
        res, namespace = key
        refs = groups[key]
        try:
            listed = cluster.list(res, namespace)
        except ApiError as exc:
            return [(ref, failed(exc)) for ref in refs]
        by_name = {str((o.get("metadata") or {}).get("name")): o for o in listed}
        return [(ref, verdict_of(by_name.get(ref.name))) for ref in refs]

    singles = [ref for key, refs in groups.items() if len(refs) < LIST_THRESHOLD for ref in refs]
    lists = [k for k, refs in groups.items() if len(refs) >= LIST_THRESHOLD]
    looked = [pair for batch in cluster.map(look_group, lists) for pair in batch]
    found = cluster.get_many([(waiting[ref], ref.namespace, ref.name) for ref in singles])
    for ref, obj in zip(singles, found, strict=True):
        looked.append((ref, failed(obj) if isinstance(obj, ApiError) else verdict_of(obj)))
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
    "group_kind",
    "wait_healthy",
]
