"""Live preview: what applying the rendered objects would change in the cluster right now.

For each object: a server-side apply with ``dryRun=All`` and the bot's field manager, compared
with the live object, both normalized and with Secret values masked by :mod:`bot.diff`. Live
members of the app's ApplySet that Git no longer declares are deletions when prune is on. An
object the server cannot dry-run because its CRD or namespace is created by the same change is
shown as a creation of the object as declared, with a note saying so. Errors are collected per
object; every other object still gets its diff. The rules shared with the deploy are in
:mod:`bot.cluster.phases`, and those about objects another app's ApplySet holds (taken over,
released to the app that declares them now, or a conflict) in :mod:`bot.cluster.owners`.

With ``createNamespace: true`` the app's Namespace is dry-run first (a creation when it is
missing); without it, a missing namespace is one app-level error and nothing else is shown,
since the deploy would apply nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.cluster.applyset import DEFAULT_TOOLING, ApplySet, ParentState
from bot.cluster.client import Cluster
from bot.cluster.errors import KubeError
from bot.cluster.owners import Declarations, Owners
from bot.cluster.phases import (
    check_parent_allowed,
    discovery_error,
    missing_namespace,
    prune_candidates,
    read_parent,
    run_phase,
)
from bot.cluster.plan import (
    AppSpecLike,
    LiveIndex,
    app_namespace,
    change_order,
    namespaces_created,
    prepare,
)
from bot.diff import object_diff
from bot.model import AppResult, Change, Manifest, Obj, ObjectChange

DEFAULT_FIELD_MANAGER = "gitops-bot"

IsAncestor = Callable[[str, str], bool]
"""``is_ancestor(old, new)``: whether commit ``old`` is an ancestor of commit ``new``."""
PRUNE_WOULD_SKIP = "prune not previewed: with {count} error(s) the deploy would not delete anything"


def namespace_field_manager(field_manager: str) -> str:
    """The field manager of the Namespace ``createNamespace`` creates: not the objects' own,
    so applying a bare Namespace never strips what the objects' manager applied to it (its
    labels, when an app declares that Namespace itself)."""
    return f"{field_manager}-namespace"


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
    declared: Declarations | None = None,
    is_ancestor: IsAncestor | None = None,
    observed: list[tuple[Obj | None, Obj]] | None = None,
) -> AppResult:
    """What merging would change for one app on ``cluster`` (mode LIVE).

    ``force`` overrides the app's ``force_conflicts`` (drift forces: it asks what differs,
    not who owns it); ``prune`` overrides the app's ``prune`` (False when the app did not
    render cleanly: the deploy would not touch it, so nothing it lacks may show as deleted).
    ``declared`` (who declares what at ``commit``) and ``is_ancestor`` decide about objects
    another app's ApplySet holds, as the deploy of ``commit`` will (:mod:`bot.cluster.owners`):
    pass the same as to the deploy, or objects moving between apps show as conflicts.
    ``observed`` receives (live object or None, dry-run answer) for each object the server
    answered, for analyses of the two states (:func:`bot.impact.workload_restarts`)."""
    result = AppResult(name=spec.name, target=cluster.target.name, commit=commit)
    applyset = ApplySet.for_app(spec.name, app_namespace(spec), tooling=tooling)
    try:
        check_parent_allowed(cluster, applyset)
    except KubeError as exc:  # the app's own namespace is outside the allowlist
        result.errors.append(exc.to_object_error())
        return result
    unreachable = discovery_error(cluster)
    if unreachable is not None:
        result.errors.append(unreachable)
        return result
    parent: ParentState | None = None
    try:
        parent = read_parent(cluster, applyset)
    except KubeError as exc:  # the deploy would refuse the whole app
        result.errors.append(exc.to_object_error())
    prepared = prepare(cluster, spec, manifests, applyset)
    result.errors.extend(prepared.errors)
    missing = missing_namespace(cluster, spec, prepared.items)
    if missing is not None:  # the deploy applies nothing of the app
        result.errors.append(missing)
        return result
    owners = Owners(
        cluster,
        applyset,
        app=spec.name,
        declared=declared,
        commit=commit,
        is_ancestor=is_ancestor,
    )
    live = LiveIndex(cluster)
    live.fetch(prepared.items)
    created = namespaces_created(prepared.items)
    for members, manager in (
        (False, namespace_field_manager(field_manager)),
        (True, field_manager),
    ):
        outcomes = run_phase(
            cluster,
            [item for item in prepared.items if item.member is members],
            live,
            field_manager=manager,
            force=spec.force_conflicts if force is None else force,
            dry_run=True,
            created_namespaces=created,
            owners=owners,
        )
        for outcome in outcomes:
            outcome.add_to(result)
            if observed is not None and outcome.answer is not None:
                observed.append((live.get(outcome.item), outcome.answer))

    if (spec.prune if prune is None else prune) and parent is not None:
        if result.errors:
            # the deploy prunes only after every object applied; with errors it would not
            result.notes.append(PRUNE_WOULD_SKIP.format(count=len(result.errors)))
        else:
            plan = prune_candidates(cluster, applyset, parent, prepared.items, live, owners=owners)
            result.errors.extend(plan.errors)
            result.changes.extend(
                ObjectChange(ref=ref, change=Change.DELETE, diff=object_diff(obj, None, ref=ref))
                for _res, obj, ref in plan.doomed
            )
            result.notes.extend(note for _ref, note in plan.released)
    result.changes.sort(key=change_order)
    return result
