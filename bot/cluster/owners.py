"""Who may hold an object: one commit's declarations per target, and what an app's run does
with a live object that another ApplySet holds.

Each app deploys through its own ApplySet (:mod:`bot.cluster.applyset`): every object it applies
carries the set's ``applyset.kubernetes.io/part-of`` label. The manifest engine refuses an object
that two apps declare at one commit (:mod:`bot.manifests.overlap`), but in the cluster an object
can still carry another set's label: it moved from app A to app B, an app was renamed, or it
belongs to something else (kubectl, another repository's bot, a set whose parent is gone).

The rules, all decided from one commit's :class:`Declarations` (which app declares which object
on which target), so that every app's preview and deploy of that commit agree whichever runs
first — issue 15 deploys one app per job, in parallel:

* **Moved.** App B declares an object that app A's set holds, and A is an app of the same commit
  on the same target that rendered cleanly and no longer declares it: B takes it over (its
  apply relabels the object), and A's prune *releases* it instead of deleting it (left as it
  is, still covered by A's parent, until B's apply relabels it: nothing is deleted whichever
  deploy runs first, or if B's deploy fails).
* **Renamed or removed.** The set belongs to an app that is not on this target in
  ``.gitops.yaml`` at this commit (renamed, removed, moved to another target or namespace):
  its parent Secret ``gitops-bot.<app>`` (found by the set's id label) has the bot's tooling
  and records a last deployed commit in this repository's history (``is_ancestor``): B takes
  it over. An app of another repository deploying to the same cluster fails that test.
* **Anything else is a conflict** naming the other owner (reason ``ApplySetConflict``): the
  object is not applied, so the deploy prunes nothing, and the preview shows the same error.

Without declarations (a caller that passes none), every object of another set is a conflict:
the bot never takes an object over on a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.cluster.applyset import (
    COMMIT_ANNOTATION,
    ID_LABEL,
    PARENT_PREFIX,
    PART_OF_LABEL,
    TOOLING_ANNOTATION,
    ApplySet,
    tooling_name,
)
from bot.cluster.client import Cluster
from bot.cluster.errors import ApiError
from bot.model import Obj, ObjectError, ObjectRef

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.cluster.plan import AppSpecLike, Item
    from bot.cluster.runner import RenderedLike

Key = tuple[str, str, str, str]
"""An object's identity without its version: ``ObjectRef.key``."""

REASON = "ApplySetConflict"

# What the report says. "{ref}" is the object ("ConfigMap web/a").
TAKEN_OVER = "{ref}: taken over from app {owner!r}, which no longer declares it at this commit"
TAKEN_OVER_GONE = (
    "{ref}: taken over from app {owner!r}, which is not on target {target!r} in .gitops.yaml "
    "at this commit (its last deploy, {commit:.12}, is in this repository's history)"
)
TAKEN_OVER_OWN = (
    "{ref}: taken over from this app's ApplySet in namespace {namespace!r} (the app's "
    "namespace changed; its last deploy there, {commit:.12}, is in this repository's history)"
)
MOVES_TO = (
    "{ref}: moves to app {apps}, which declares it at this commit: not pruned here, the "
    "deploy of {apps} takes it over"
)
FIX = (
    " Two apps must never own one object: remove it from one of them (to move it, remove it "
    "from the other app in the same commit)."
)
CONFLICT_BOTH = "{ref} belongs to app {owner!r} (ApplySet parent {parent}), which also declares it."
CONFLICT_UNRENDERED = (
    "{ref} belongs to app {owner!r} (ApplySet parent {parent}), which was not rendered in this "
    "run, so whether it gives the object up is unknown."
)
CONFLICT_BROKEN = (
    "{ref} belongs to app {owner!r} (ApplySet parent {parent}), which did not render cleanly at "
    "this commit, so whether it gives the object up is unknown: fix {owner!r} first."
)
CONFLICT_UNCHECKED = (
    "{ref} belongs to app {owner!r} (ApplySet parent {parent}); without the declarations of "
    "this commit the bot cannot tell whether {owner!r} gives it up, and never takes an object "
    "over on a guess."
)
CONFLICT_FOREIGN = (
    "{ref} belongs to app {owner!r} (ApplySet parent {parent}), which is not an app of this "
    "repository on target {target!r}: {why}; the bot never takes over another app's object."
)
WHY_NO_COMMIT = "its parent records no deployed commit"
WHY_UNKNOWN_COMMIT = "its last deploy, {commit:.12}, is not in this repository's history"
WHY_NO_HISTORY = "this run cannot check its last deploy, {commit:.12}, against the history"
CONFLICT_TOOL = (
    "{ref} belongs to an ApplySet of {tooling!r} (parent {parent}), not to an app of the bot; "
    "the bot never takes over another tool's object: remove it from that set first."
)
CONFLICT_ORPHAN = (
    "{ref} carries {label}={set_id}, an ApplySet whose parent was not found; the bot does not "
    "take over another set's object: remove that label from the object to let this app adopt it."
)


@dataclass(frozen=True)
class DeclaredApp:
    """One app of ``.gitops.yaml`` at the commit. ``namespace`` holds its ApplySet parent;
    ``rendered``: rendered in this run; ``complete``: rendered without errors, so what it
    declares is known."""

    name: str
    target: str
    namespace: str
    rendered: bool = False
    complete: bool = False


@dataclass(frozen=True)
class Declarations:
    """Who declares what on each target at one commit (pure data; build it with :meth:`of`).

    ``objects`` maps (target, object key) to the apps declaring that object, ``sets`` (target,
    ApplySet id) to the app whose set it is."""

    apps: Mapping[str, DeclaredApp] = field(default_factory=dict)
    objects: Mapping[tuple[str, Key], tuple[str, ...]] = field(default_factory=dict)
    sets: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        rendered: Iterable[RenderedLike],
        *,
        specs: Iterable[AppSpecLike],
        one_target: str | None = None,
    ) -> Declarations:
        """The declarations of one commit: ``specs`` are every app of its ``.gitops.yaml``
        (an app missing there counts as removed), ``rendered`` the apps rendered from it —
        every app on the targets concerned, or the decisions about the others are refused as
        unknown. ``one_target`` sends every app to that one target (the CLI's
        ``--kubeconfig``), as the run does."""
        from bot.cluster.plan import app_namespace

        apps: dict[str, DeclaredApp] = {}
        for spec in specs:
            apps[spec.name] = DeclaredApp(
                name=spec.name, target=one_target or spec.target, namespace=app_namespace(spec)
            )
        objects: dict[tuple[str, Key], tuple[str, ...]] = {}
        for app in rendered:
            spec = app.spec
            target = one_target or spec.target
            apps[spec.name] = DeclaredApp(
                name=spec.name,
                target=target,
                namespace=app_namespace(spec),
                rendered=True,
                complete=not app.errors,
            )
            for manifest in app.manifests:
                where = (target, manifest.ref.key)
                if spec.name not in objects.get(where, ()):
                    objects[where] = (*objects.get(where, ()), spec.name)
        sets = {
            (app.target, ApplySet.for_app(app.name, app.namespace).id): app.name
            for app in apps.values()
        }
        return cls(apps=apps, objects=objects, sets=sets)

    def declarers(self, target: str, key: Key) -> tuple[str, ...]:
        """The apps declaring the object ``key`` on ``target``."""
        return self.objects.get((target, key), ())

    def app_of_set(self, target: str, set_id: str) -> DeclaredApp | None:
        """The app of this commit on ``target`` whose ApplySet has id ``set_id``."""
        name = self.sets.get((target, set_id))
        return self.apps.get(name) if name is not None else None


@dataclass
class Claim:
    """What a run does with an object another set holds: take it over (``note`` says so in
    the report) or refuse it (``error``)."""

    note: str | None = None
    error: ObjectError | None = None


def held_by(obj: Obj | None) -> str | None:
    """The id of the ApplySet whose member the live ``obj`` is, if any."""
    if not obj:
        return None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get(PART_OF_LABEL)
    return str(value) if value else None


class Owners:
    """The decisions of one app's run (preview or deploy) on one cluster."""

    def __init__(
        self,
        cluster: Cluster,
        applyset: ApplySet,
        *,
        app: str,
        declared: Declarations | None,
        commit: str | None,
        is_ancestor: Callable[[str, str], bool] | None,
    ) -> None:
        self.cluster = cluster
        self.applyset = applyset
        self.app = app
        self.declared = declared
        self.commit = commit
        self.is_ancestor = is_ancestor
        self.target = cluster.target.name

    def foreign(self, obj: Obj | None) -> str | None:
        """The id of the other ApplySet holding the live ``obj``, or None (ours, or none)."""
        set_id = held_by(obj)
        return set_id if set_id is not None and set_id != self.applyset.id else None

    def claims(self, held: Sequence[tuple[Item, str]]) -> list[Claim]:
        """The decision for each ``(item, id of the set holding its live object)``, in order;
        the parents of sets that are no app of this commit are looked up in one go."""
        unknown = {
            set_id
            for _item, set_id in held
            if self.declared is None or self.declared.app_of_set(self.target, set_id) is None
        }
        namespaces = {item.ref.namespace for item, _ in held if item.ref.namespace}
        parents = self._parents(unknown, namespaces | {self.applyset.namespace})
        return [self._claim(item, set_id, parents.get(set_id)) for item, set_id in held]

    def release_note(self, ref: ObjectRef) -> str | None:
        """For prune: the note when another app declares the member ``ref`` on this target at
        this commit (it is released, not deleted); None when it is to be deleted."""
        if self.declared is None:
            return None
        others = [a for a in self.declared.declarers(self.target, ref.key) if a != self.app]
        if not others:
            return None
        return MOVES_TO.format(ref=ref, apps=" and ".join(repr(a) for a in others))

    # -- inside ------------------------------------------------------------------------------

    def _claim(self, item: Item, set_id: str, parent: Obj | None) -> Claim:
        ref = item.ref
        declared = self.declared
        owner = declared.app_of_set(self.target, set_id) if declared is not None else None
        if declared is not None and owner is not None:
            declarers = declared.declarers(self.target, item.key)
            label = f"Secret {owner.namespace}/{ApplySet.for_app(owner.name, owner.namespace).name}"
            if owner.name in declarers:
                return self._refuse(
                    item, CONFLICT_BOTH.format(ref=ref, owner=owner.name, parent=label)
                )
            if not owner.rendered:
                return self._refuse(
                    item, CONFLICT_UNRENDERED.format(ref=ref, owner=owner.name, parent=label)
                )
            if not owner.complete:
                return self._refuse(
                    item, CONFLICT_BROKEN.format(ref=ref, owner=owner.name, parent=label)
                )
            return Claim(note=TAKEN_OVER.format(ref=ref, owner=owner.name))
        if parent is None:
            return self._refuse(
                item, CONFLICT_ORPHAN.format(ref=ref, label=PART_OF_LABEL, set_id=set_id)
            )
        meta = parent.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        name = str(meta.get("name") or "")
        where = f"Secret {meta.get('namespace')}/{name}"
        tooling = str(annotations.get(TOOLING_ANNOTATION) or "")
        if tooling_name(tooling) != tooling_name(self.applyset.tooling) or not name.startswith(
            PARENT_PREFIX
        ):
            return self._refuse(
                item, CONFLICT_TOOL.format(ref=ref, tooling=tooling or "unknown", parent=where)
            )
        other = name[len(PARENT_PREFIX) :]
        if declared is None:
            return self._refuse(item, CONFLICT_UNCHECKED.format(ref=ref, owner=other, parent=where))
        commit = str(annotations.get(COMMIT_ANNOTATION) or "")
        why = self._unrelated(commit)
        if why is not None:
            return self._refuse(
                item,
                CONFLICT_FOREIGN.format(
                    ref=ref, owner=other, parent=where, target=self.target, why=why
                ),
            )
        if other == self.applyset.name[len(PARENT_PREFIX) :]:
            namespace = str(meta.get("namespace") or "")
            return Claim(note=TAKEN_OVER_OWN.format(ref=ref, namespace=namespace, commit=commit))
        return Claim(
            note=TAKEN_OVER_GONE.format(ref=ref, owner=other, target=self.target, commit=commit)
        )

    def _unrelated(self, commit: str) -> str | None:
        """Why the set's last deployed ``commit`` does not show it came from this repository,
        or None when it is in the history of the commit being deployed."""
        if not commit:
            return WHY_NO_COMMIT
        if self.commit is None or self.is_ancestor is None:
            return WHY_NO_HISTORY.format(commit=commit)
        if commit != self.commit and not self.is_ancestor(commit, self.commit):
            return WHY_UNKNOWN_COMMIT.format(commit=commit)
        return None

    def _refuse(self, item: Item, message: str) -> Claim:
        source = item.manifest.source
        return Claim(
            error=ObjectError(
                message + FIX,
                ref=item.ref,
                file=source.file,
                line=source.line,
                reason=REASON,
            )
        )

    def _parents(self, set_ids: set[str], namespaces: set[str]) -> dict[str, Obj]:
        """The parent Secrets of ``set_ids``, by id: one LIST over every namespace, or, when
        that is not allowed, one per namespace where a parent is likely (the objects' own and
        the app's)."""
        if not set_ids:
            return {}
        secrets = self.cluster.resource("v1", "Secret")
        selector = f"{ID_LABEL} in ({','.join(sorted(set_ids))})"
        [everywhere] = self.cluster.list_many([(secrets, None, selector)])
        found: list[Obj] = []
        if isinstance(everywhere, ApiError):
            for answer in self.cluster.list_many(
                [(secrets, namespace, selector) for namespace in sorted(namespaces)]
            ):
                if not isinstance(answer, ApiError):
                    found += answer
        else:
            found = everywhere
        parents: dict[str, Obj] = {}
        for obj in found:
            set_id = ((obj.get("metadata") or {}).get("labels") or {}).get(ID_LABEL)
            if set_id in set_ids:
                parents.setdefault(str(set_id), obj)
        return parents
