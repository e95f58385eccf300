"""Live preview: what applying the rendered objects would change in the cluster right now.

For each object: a server-side apply with ``dryRun=All`` and the bot's field manager, compared
with the live object, both normalized and with Secret values masked by :mod:`bot.diff`. Live
members of the app's ApplySet that Git no longer declares are deletions when prune is on. An
object the server cannot dry-run because its CRD or namespace is created by the same change is
shown as a creation of the object as declared, with a note saying so. Errors are collected per
object; every other object still gets its diff.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.cluster.applyset import DEFAULT_TOOLING, RECREATE_ANNOTATION, ApplySet, ParentState
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import IMMUTABLE_HINT, ApiError, ApplySetError, ConflictError, NotFoundError
from bot.cluster.plan import (
    PENDING_KIND_NOTE,
    PENDING_NAMESPACE_NOTE,
    AppSpecLike,
    Item,
    LiveIndex,
    Prepared,
    app_namespace,
    change_order,
    list_members,
    namespaces_created,
    prepare,
)
from bot.diff import object_diff
from bot.errors import ClusterError
from bot.model import AppResult, Change, Manifest, Obj, ObjectChange, ObjectError, ObjectRef

DEFAULT_FIELD_MANAGER = "gitops-bot"
CONFLICT_HINT = (
    " — another field manager owns these fields; change them there, or set forceConflicts: "
    "true for the app in .gitops.yaml to take them over"
)


PRUNE_WOULD_SKIP = "prune not previewed: with {count} error(s) the deploy would not delete anything"
RECREATE_NOTE = "{ref} will be deleted and re-created ({annotation}): {message}"


def describe(exc: ApiError) -> str:
    """The server's message, plus what to do for conflicts and immutable fields."""
    if exc.immutable:
        return IMMUTABLE_HINT.format(message=exc.message, annotation=RECREATE_ANNOTATION)
    if isinstance(exc, ConflictError):
        return exc.message + CONFLICT_HINT
    return exc.message


def discovery_error(cluster: Cluster) -> ObjectError | None:
    """One app-level error when the cluster cannot even be discovered (down, unauthorized),
    instead of the same failure against every object."""
    try:
        cluster.mapper  # noqa: B018 -- discovery, once per job
    except ApiError as exc:
        err = exc.to_object_error()
        err.message = f"cannot read the API of target {cluster.target.name!r}: {exc.message}"
        return err
    return None


def prune_refusal(cluster: Cluster, ref: ObjectRef) -> ObjectError | None:
    """An error when the target's allowlist forbids deleting this member, else None."""
    try:
        cluster.target.check(kind=ref.kind, namespace=ref.namespace, name=ref.name, label=str(ref))
    except ClusterError as exc:
        return ObjectError(message=f"not pruned: {exc}", ref=ref, reason="NotAllowed")
    return None


def recreate_allowed(obj: Obj) -> bool:
    """Whether the object opts in to delete-and-re-create on an immutable-field change."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RECREATE_ANNOTATION, "")).lower() == "true"


def preview_app(
    cluster: Cluster,
    spec: AppSpecLike,
    manifests: Sequence[Manifest],
    *,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    commit: str | None = None,
    tooling: str = DEFAULT_TOOLING,
    force: bool | None = None,
    prune: bool | None = None,
) -> AppResult:
    """What merging would change for one app on ``cluster`` (mode LIVE).

    ``force`` overrides the app's ``force_conflicts`` (drift forces: it asks what differs,
    not who owns it); ``prune`` overrides the app's ``prune`` (False when the app did not
    render cleanly: the deploy would not touch it, so nothing it lacks may show as deleted)."""
    result = AppResult(name=spec.name, target=cluster.target.name, commit=commit)
    applyset = ApplySet.for_app(spec.name, app_namespace(spec), tooling=tooling)
    try:
        cluster.target.check(
            kind="Secret", namespace=applyset.namespace, name=applyset.name, label=applyset.label
        )
    except ClusterError as exc:  # the app's own namespace is outside the allowlist
        result.errors.append(ObjectError(message=str(exc), reason="NotAllowed"))
        return result
    unreachable = discovery_error(cluster)
    if unreachable is not None:
        result.errors.append(unreachable)
        return result
    parent: ParentState | None = None
    try:
        parent = applyset.parse_parent(
            cluster.get(cluster.resource("v1", "Secret"), applyset.namespace, applyset.name)
        )
    except ApplySetError as exc:  # the deploy would refuse the whole app
        result.errors.append(ObjectError(message=str(exc), reason="ApplySetConflict"))
    except ApiError as exc:
        result.errors.append(exc.to_object_error())
    prepared = prepare(cluster, spec, manifests, applyset)
    result.errors.extend(prepared.errors)
    created_namespaces = namespaces_created(prepared.items)
    live = LiveIndex(cluster)
    live.fetch(prepared.items)
    do_force = spec.force_conflicts if force is None else force

    def settle(item: Item, dry: Obj | ApiError | None) -> _Outcome:
        if isinstance(dry, NotFoundError):
            namespace = item.ref.namespace
            if namespace and namespace in created_namespaces:
                item.pending_namespace = True
                note = PENDING_NAMESPACE_NOTE.format(ref=item.ref, namespace=namespace)
                return _as_created(item), None, note
            return None, item.error(dry), None
        if isinstance(dry, ApiError):
            if dry.immutable and recreate_allowed(item.obj) and live.get(item) is not None:
                change = ObjectChange(
                    ref=item.ref, change=Change.UPDATE, source=item.manifest.source
                )
                return (
                    change,
                    None,
                    RECREATE_NOTE.format(
                        ref=item.ref, message=dry.message, annotation=RECREATE_ANNOTATION
                    ),
                )
            err = item.error(dry)
            err.message = describe(dry)
            return None, err, None
        return _changed(item, live.get(item), dry or {}), None, None

    outcomes: list[_Outcome | None] = [None] * len(prepared.items)
    sending: list[tuple[int, Item]] = []
    jobs: list[tuple[Resource, Obj]] = []
    for position, item in enumerate(prepared.items):
        fetch_error = live.errors.get(item.key)
        if item.pending_kind:
            outcomes[position] = (_as_created(item), None, PENDING_KIND_NOTE.format(ref=item.ref))
        elif fetch_error is not None:
            outcomes[position] = (None, item.error(fetch_error), None)
        else:
            assert item.resource is not None
            sending.append((position, item))
            jobs.append((item.resource, item.obj))
    answers = cluster.apply_many(jobs, field_manager=field_manager, force=do_force, dry_run=True)
    for (position, item), answer in zip(sending, answers, strict=True):
        outcomes[position] = settle(item, answer)

    for outcome in outcomes:
        assert outcome is not None
        change, error, note = outcome
        if change is not None:
            result.changes.append(change)
        if error is not None:
            result.errors.append(error)
        if note is not None:
            result.notes.append(note)

    if (spec.prune if prune is None else prune) and parent is not None:
        if result.errors:
            # the deploy prunes only after every object applied; with errors it would not
            result.notes.append(PRUNE_WOULD_SKIP.format(count=len(result.errors)))
        else:
            _preview_prune(cluster, applyset, parent, prepared, live, result)
    result.changes.sort(key=change_order)
    return result


_Outcome = tuple[ObjectChange | None, ObjectError | None, str | None]
"""(change, error, note) of one object's dry run."""


def _as_created(item: Item) -> ObjectChange:
    return ObjectChange(
        ref=item.ref,
        change=Change.CREATE,
        diff=object_diff(None, item.obj, ref=item.ref),
        source=item.manifest.source,
    )


def _changed(item: Item, before: Obj | None, after: Obj) -> ObjectChange:
    diff = object_diff(before, after, ref=item.ref)
    change = Change.CREATE if before is None else Change.UPDATE if diff else Change.UNCHANGED
    return ObjectChange(ref=item.ref, change=change, diff=diff, source=item.manifest.source)


def _preview_prune(
    cluster: Cluster,
    applyset: ApplySet,
    parent: ParentState,
    prepared: Prepared,
    live: LiveIndex,
    result: AppResult,
) -> None:
    """The members the apply would prune: the same listing as the deploy's prune step."""
    desired = prepared.keys
    members, errors = list_members(
        cluster,
        applyset,
        group_kinds=parent.group_kinds | prepared.group_kinds(),
        namespaces=parent.namespaces | prepared.namespaces(),
        live=live,
    )
    result.errors.extend(errors)
    for _res, obj in members:
        ref = ObjectRef.of(obj)
        if ref.key in desired:
            continue
        refusal = prune_refusal(cluster, ref)
        if refusal is not None:
            result.errors.append(refusal)
            continue
        result.changes.append(
            ObjectChange(ref=ref, change=Change.DELETE, diff=object_diff(obj, None, ref=ref))
        )
