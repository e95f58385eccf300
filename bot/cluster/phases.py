"""The shape preview and apply share: one object's outcome, and the one phase runner.

:func:`run_phase` sends the server-side applies of prepared items (in a dry run, with
``dryRun=All``) as one batch and settles each answer into an :class:`ObjectOutcome`. The preview
runs it once over every item with ``dry_run=True``; the deploy runs it once per apply phase
(Namespaces and CRDs, cluster-scoped objects, namespaced objects). The rules that decide what
an answer means live here once: an object whose namespace the change creates, an immutable field
with or without the re-create annotation, a field-manager conflict, a creation's diff.

Also shared: the checks before anything is sent (:func:`discovery_error`, :func:`read_parent`,
:func:`missing_namespace`), what to do with objects another ApplySet holds (decided by
:class:`bot.cluster.owners.Owners` before sending), and what prune would delete or release
(:func:`prune_candidates`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from bot.cluster.applyset import RECREATE_ANNOTATION, ApplySet, ParentState
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import IMMUTABLE_HINT, ApiError, ConflictError, KubeError, NotFoundError
from bot.cluster.owners import Owners
from bot.cluster.plan import (
    CRD_KIND,
    PENDING_KIND_NOTE,
    PENDING_NAMESPACE_NOTE,
    AppSpecLike,
    Item,
    LiveIndex,
    app_namespace,
    list_members,
    namespaces_created,
)
from bot.diff import object_diff
from bot.model import AppResult, Change, Obj, ObjectChange, ObjectError, ObjectRef

CONFLICT_HINT = (
    " — another field manager owns these fields; change them there, or set forceConflicts: "
    "true for the app to take them over"
)
RECREATE_NOTE = "{ref} will be deleted and re-created ({annotation}): {message}"
RECREATED_NOTE = "{ref} was deleted and re-created to change an immutable field"
RECREATE_WAIT_SECONDS = 60.0


@dataclass
class ObjectOutcome:
    """What happened to one object in a phase (in a dry run: what would happen). ``answer``
    is the server's object when it was read (a dry run's, an update's, a CRD's)."""

    item: Item
    change: ObjectChange | None = None
    error: ObjectError | None = None
    note: str | None = None
    answer: Obj | None = None
    takeover: str | None = None  # taken over from another app's ApplySet: what the report says

    @property
    def applied(self) -> bool:
        return self.change is not None and self.error is None

    def add_to(self, result: AppResult) -> None:
        if self.change is not None:
            result.changes.append(self.change)
        if self.error is not None:
            result.errors.append(self.error)
        if self.takeover is not None:
            result.notes.append(self.takeover)
        if self.note is not None:
            result.notes.append(self.note)


def run_phase(
    cluster: Cluster,
    items: Sequence[Item],
    live: LiveIndex,
    *,
    field_manager: str,
    force: bool,
    dry_run: bool,
    created_namespaces: Collection[str] = (),
    progress: Callable[[int, int], None] | None = None,
    owners: Owners | None = None,
) -> list[ObjectOutcome]:
    """Server-side apply of ``items`` (``dry_run``: ``dryRun=All``) against the live objects
    ``live`` fetched for them; one outcome per item, in order. ``created_namespaces``: the
    namespaces the change creates (a dry run cannot place objects in them yet).
    ``progress(done, total)`` as objects finish. ``owners`` decides about members whose live
    object another ApplySet holds (taken over with a note, or refused unsent); without it
    they are not checked."""
    total = len(items)
    outcomes: list[ObjectOutcome | None] = [_before_sending(item, live) for item in items]
    takeovers: dict[int, str] = {}
    if owners is not None:
        held = [
            (n, item, set_id)
            for n, item in enumerate(items)
            if outcomes[n] is None
            and item.member
            and (set_id := owners.foreign(live.get(item))) is not None
        ]
        claims = owners.claims([(item, set_id) for _n, item, set_id in held])
        for (n, item, _set_id), claim in zip(held, claims, strict=True):
            if claim.error is not None:
                outcomes[n] = ObjectOutcome(item, error=claim.error)
            elif claim.note is not None:
                takeovers[n] = claim.note
    sending = [item for item, outcome in zip(items, outcomes, strict=True) if outcome is None]
    early = total - len(sending)

    def report(done: int) -> None:
        if progress is not None and (done % 50 == 0 or early + done == total):
            progress(early + done, total)

    answers = cluster.apply_many(
        [(item.resource, item.obj) for item in sending],  # type: ignore[misc]
        field_manager=field_manager,
        force=force,
        dry_run=dry_run,
        # a deploy reads a creation's answer only for a CRD (its Established condition)
        want=lambda n: (
            dry_run or live.get(sending[n]) is not None or sending[n].ref.kind == CRD_KIND
        ),
        progress=report,
    )
    if progress is not None and not sending:
        progress(total, total)
    settled = iter(
        _settle(
            cluster,
            item,
            live.get(item),
            answer,
            field_manager=field_manager,
            force=force,
            dry_run=dry_run,
            created_namespaces=created_namespaces,
        )
        for item, answer in zip(sending, answers, strict=True)
    )
    done = [outcome if outcome is not None else next(settled) for outcome in outcomes]
    for n, note in takeovers.items():
        done[n].takeover = note
    return done


def _before_sending(item: Item, live: LiveIndex) -> ObjectOutcome | None:
    """The outcome of an item that is not sent at all, else None."""
    if item.pending_kind:  # only a preview gets here: a deploy resolves the kind first
        return ObjectOutcome(item, _as_created(item), note=PENDING_KIND_NOTE.format(ref=item.ref))
    fetch_error = live.errors.get(item.key)
    if fetch_error is not None:
        return ObjectOutcome(item, error=item.error(fetch_error))
    return None


def _settle(
    cluster: Cluster,
    item: Item,
    before: Obj | None,
    answer: Obj | ApiError | None,
    *,
    field_manager: str,
    force: bool,
    dry_run: bool,
    created_namespaces: Collection[str],
) -> ObjectOutcome:
    """What one answer means."""
    if not isinstance(answer, ApiError):
        return ObjectOutcome(item, _changed(item, before, answer, dry_run=dry_run), answer=answer)
    if dry_run and isinstance(answer, NotFoundError) and item.ref.namespace in created_namespaces:
        item.pending_namespace = True
        note = PENDING_NAMESPACE_NOTE.format(ref=item.ref, namespace=item.ref.namespace)
        return ObjectOutcome(item, _as_created(item), note=note)
    if answer.immutable and recreate_allowed(item.obj) and before is not None:
        if dry_run:
            change = ObjectChange(ref=item.ref, change=Change.UPDATE, source=item.manifest.source)
            note = RECREATE_NOTE.format(
                ref=item.ref, message=answer.message, annotation=RECREATE_ANNOTATION
            )
            return ObjectOutcome(item, change, note=note)
        try:
            after = _recreate(cluster, item, field_manager=field_manager, force=force)
        except ApiError as exc:
            return ObjectOutcome(item, error=item.error(exc))
        change = _changed(item, before, after, dry_run=False)
        return ObjectOutcome(item, change, note=RECREATED_NOTE.format(ref=item.ref), answer=after)
    error = item.error(answer)
    error.message = describe(answer)
    return ObjectOutcome(item, error=error)


def _as_created(item: Item) -> ObjectChange:
    """A creation of the object as declared (the server could not dry-run it)."""
    return ObjectChange(
        ref=item.ref,
        change=Change.CREATE,
        diff=object_diff(None, item.obj, ref=item.ref),
        source=item.manifest.source,
    )


def _changed(item: Item, before: Obj | None, after: Obj | None, *, dry_run: bool) -> ObjectChange:
    if before is None:
        # A deploy's report does not repeat the content of a creation (the preview showed it):
        # dumping every created object again would double the deploy's CPU.
        diff = object_diff(None, after, ref=item.ref) if dry_run and after is not None else ""
        change = Change.CREATE
    else:
        diff = object_diff(before, after, ref=item.ref) if after is not None else ""
        change = Change.UPDATE if diff else Change.UNCHANGED
    return ObjectChange(ref=item.ref, change=change, diff=diff, source=item.manifest.source)


def _recreate(cluster: Cluster, item: Item, *, field_manager: str, force: bool) -> Obj:
    """Delete the object, wait until it is gone (finalizers), apply it again."""
    assert item.resource is not None
    res, namespace, name = item.resource, item.ref.namespace, item.ref.name
    cluster.delete(res, namespace, name)
    # re-creating before the deletion finished would fail with a conflict
    deadline = time.monotonic() + RECREATE_WAIT_SECONDS
    delay = 0.05
    while cluster.get(res, namespace, name) is not None:
        if time.monotonic() > deadline:
            raise ApiError(
                f"{item.ref} was not deleted within {RECREATE_WAIT_SECONDS:g}s", reason="Timeout"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return cluster.apply(res, item.obj, field_manager=field_manager, force=force)


def describe(exc: ApiError) -> str:
    """The server's message, plus what to do for conflicts and immutable fields."""
    if exc.immutable:
        return IMMUTABLE_HINT.format(message=exc.message, annotation=RECREATE_ANNOTATION)
    if isinstance(exc, ConflictError):
        return exc.message + CONFLICT_HINT
    return exc.message


def recreate_allowed(obj: Obj) -> bool:
    """Whether the object opts in to delete-and-re-create on an immutable-field change."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RECREATE_ANNOTATION, "")).lower() == "true"


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


def read_parent(cluster: Cluster, applyset: ApplySet) -> ParentState:
    """The live parent's state (raises ApplySetError for foreign tooling, ApiError on I/O)."""
    secrets = cluster.resource("v1", "Secret")
    return applyset.parse_parent(cluster.get(secrets, applyset.namespace, applyset.name))


def check_parent_allowed(cluster: Cluster, applyset: ApplySet) -> None:
    """Raise NotAllowedError when the app's own namespace (its parent's) is not allowed."""
    cluster.target.check(
        kind="Secret", namespace=applyset.namespace, name=applyset.name, label=applyset.label
    )


@dataclass
class PrunePlan:
    """What prune does with the live members of the app's set that Git no longer declares:
    ``doomed`` are deleted; ``released`` (with their note) are left to the app that declares
    them now (:meth:`Owners.release_note`); ``errors`` are a LIST that failed or a member the
    allowlist refuses."""

    doomed: list[tuple[Resource, Obj, ObjectRef]] = field(default_factory=list)
    released: list[tuple[ObjectRef, str]] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)


def prune_candidates(
    cluster: Cluster,
    applyset: ApplySet,
    parent: ParentState,
    items: Sequence[Item],
    live: LiveIndex,
    *,
    owners: Owners | None = None,
) -> PrunePlan:
    """The live members of the app's set that Git no longer declares: deleted, or released to
    the app declaring them now (``owners``), or refused by the allowlist."""
    desired = {item.key for item in items}
    members, errors = list_members(
        cluster,
        applyset,
        group_kinds=parent.group_kinds | {item.group_kind for item in items},
        namespaces=parent.namespaces | {item.ref.namespace for item in items if item.ref.namespace},
        live=live,
    )
    plan = PrunePlan(errors=errors)
    for res, obj in members:
        ref = ObjectRef.of(obj)
        if ref.key in desired:
            continue
        note = owners.release_note(ref) if owners is not None else None
        if note is not None:
            plan.released.append((ref, note))
            continue
        try:
            cluster.target.check(
                kind=ref.kind, namespace=ref.namespace, name=ref.name, label=str(ref)
            )
        except KubeError as exc:
            errors.append(ObjectError(message=f"not pruned: {exc}", ref=ref, reason=exc.reason))
            continue
        plan.doomed.append((res, obj, ref))
    return plan


MISSING_NAMESPACE = (
    "namespace {namespace!r} does not exist on target {target!r}, and app {app!r} keeps its "
    "objects and its ApplySet parent there: create it first, declare the Namespace in the app, "
    "or set createNamespace: true for the app in .gitops.yaml"
)


def missing_namespace(
    cluster: Cluster, spec: AppSpecLike, items: Sequence[Item]
) -> ObjectError | None:
    """One app-level error when the app's namespace does not exist and nothing in this run
    creates it (instead of a 404 against every object and the ApplySet parent). A namespace
    that cannot be read (forbidden) is not judged: the writes will say what is wrong."""
    namespace = app_namespace(spec)
    if namespace in namespaces_created(items):
        return None
    try:
        found = cluster.get(cluster.resource("v1", "Namespace"), None, namespace)
    except ApiError:
        return None
    if found is not None:
        return None
    message = MISSING_NAMESPACE.format(
        namespace=namespace, target=cluster.target.name, app=spec.name
    )
    return ObjectError(message, reason="NamespaceNotFound")
