"""What the engines share before touching anything: one prepared item per rendered object.

:func:`prepare` resolves each manifest against the cluster's discovery cache (URL, scope),
fills in the namespace of namespaced objects that declare none, labels every object as a member
of the app's ApplySet, checks the target's allowlist, and notices the two things a server cannot
dry-run yet: instances of a CustomResourceDefinition created by the same change, and objects in
a namespace created by the same change. It also holds the pure ordering rules of apply, and
the live reads both engines make in bulk: :class:`LiveIndex` (the live objects of the items)
and :func:`list_members` (the ApplySet's members, for prune).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.cluster.applyset import PART_OF_LABEL, ApplySet, group_kind, split_group_kind
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import ApiError, KubeError, UnknownKindError
from bot.model import Manifest, Obj, ObjectChange, ObjectError, ObjectRef, Source

CONFIG_FILE = ".gitops.yaml"  # where createNamespace is set (bot.manifests.CONFIG_FILE)
CRD_KIND = "CustomResourceDefinition"
CRD_GROUP = "apiextensions.k8s.io"
DEFAULT_NAMESPACE = "default"

PENDING_KIND_NOTE = (
    "{ref}: its CustomResourceDefinition is created by this change; the server cannot dry-run "
    "it yet"
)
PENDING_NAMESPACE_NOTE = (
    "{ref}: its namespace {namespace!r} is created by this change; the server cannot dry-run it yet"
)

# Apply phases: what later objects depend on goes first.
PHASE_FOUNDATION = 0  # Namespaces and CRDs (wait until Established)
PHASE_CLUSTER = 1  # other cluster-scoped objects (ClusterRoles, StorageClasses, ...)
PHASE_NAMESPACED = 2  # everything else
PHASE_NAMES = {
    PHASE_FOUNDATION: "namespaces and CRDs",
    PHASE_CLUSTER: "cluster-scoped objects",
    PHASE_NAMESPACED: "namespaced objects",
}


class AppSpecLike(Protocol):
    """The parts of the manifest engine's ``AppSpec`` the cluster engine reads."""

    @property
    def name(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def prune(self) -> bool: ...
    @property
    def force_conflicts(self) -> bool: ...
    @property
    def health_timeout(self) -> float: ...
    @property
    def create_namespace(self) -> bool: ...
    @property
    def stuck_pod_timeout(self) -> float: ...
    @property
    def line(self) -> int | None: ...


def app_namespace(spec: AppSpecLike) -> str:
    """Where the app's ApplySet parent lives and namespaced objects without one go."""
    return spec.namespace or DEFAULT_NAMESPACE


def is_foundation(api_version: str, kind: str) -> bool:
    group = api_version.rpartition("/")[0]
    return (kind == "Namespace" and group == "") or (kind == CRD_KIND and group == CRD_GROUP)


def phase_of(api_version: str, kind: str, *, namespaced: bool) -> int:
    """The apply phase of an object (pure; deletion runs the phases in reverse)."""
    if is_foundation(api_version, kind):
        return PHASE_FOUNDATION
    return PHASE_NAMESPACED if namespaced else PHASE_CLUSTER


@dataclass
class Item:
    """One rendered object, ready to send."""

    manifest: Manifest
    obj: Obj  # namespace filled in, ApplySet label added
    ref: ObjectRef
    resource: Resource | None = None  # None while its CRD is pending
    namespaced: bool = True
    pending_kind: bool = False  # kind served only once a CRD of this change is applied
    pending_namespace: bool = False  # namespace created by this change, missing now
    member: bool = True  # a member of the app's ApplySet (False: the createNamespace Namespace)

    # Computed once, when the item is made: the engines ask for these several times per
    # object, and ref and namespaced never change after prepare(). (Plain attributes: a
    # cached_property takes a lock on each first read, which cost more than the values.)
    phase: int = field(init=False)
    group_kind: str = field(init=False)
    key: tuple[str, str, str, str] = field(init=False)  # ref.key: identity without version

    def __post_init__(self) -> None:
        ref = self.ref
        self.phase = phase_of(ref.api_version, ref.kind, namespaced=self.namespaced)
        self.group_kind = group_kind(ref.api_version, ref.kind)
        self.key = ref.key

    def error(self, exc: KubeError) -> ObjectError:
        """``exc`` as this object's error, pointing at its file and line."""
        source = self.manifest.source
        return exc.to_object_error(self.ref, file=source.file, line=source.line)


@dataclass
class Prepared:
    items: list[Item] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)

    def namespaces(self) -> set[str]:
        """The namespaces of the ApplySet's members."""
        return {item.ref.namespace for item in self.items if item.ref.namespace and item.member}

    def group_kinds(self) -> set[str]:
        """The kinds of the ApplySet's members."""
        return {item.group_kind for item in self.items if item.member}


@dataclass(frozen=True)
class PendingCrd:
    """A kind that a CRD in this change defines."""

    scope_namespaced: bool
    versions: frozenset[str]


def _crds_in(manifests: Iterable[Manifest]) -> dict[tuple[str, str], PendingCrd]:
    found: dict[tuple[str, str], PendingCrd] = {}
    for manifest in manifests:
        obj = manifest.obj
        if obj.get("kind") != CRD_KIND or not str(obj.get("apiVersion", "")).startswith(CRD_GROUP):
            continue
        spec = obj.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        group = spec.get("group")
        if not kind or not group:
            continue
        versions = frozenset(
            str(v.get("name")) for v in spec.get("versions") or [] if isinstance(v, dict)
        )
        found[(group, kind)] = PendingCrd(spec.get("scope") != "Cluster", versions)
    return found


def prepare(
    cluster: Cluster,
    spec: AppSpecLike,
    manifests: Sequence[Manifest],
    applyset: ApplySet,
) -> Prepared:
    """One :class:`Item` per manifest, or an error against it (unknown kind, not allowed,
    bad label); never raises for one object."""
    out = Prepared()
    crds = _crds_in(manifests)
    default_ns = app_namespace(spec)
    seen: dict[tuple[str, str, str, str], Manifest] = {}
    resources: dict[tuple[str, str], Resource] = {}  # discovery answers, once per kind
    for manifest in manifests:
        obj = manifest.obj
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        group = api_version.rpartition("/")[0]
        resource: Resource | None = None
        pending = False
        try:
            resource = resources.get((api_version, kind))
            if resource is None:
                resource = resources[(api_version, kind)] = cluster.resource(api_version, kind)
            namespaced = resource.namespaced
        except UnknownKindError as exc:
            crd = crds.get((group, kind))
            if crd is None or api_version.rpartition("/")[2] not in crd.versions:
                out.errors.append(_error(manifest, exc))
                continue
            pending, namespaced = True, crd.scope_namespaced
        except ApiError as exc:  # discovery itself failed (unreachable, forbidden)
            out.errors.append(_error(manifest, exc))
            continue
        namespace = (meta.get("namespace") or default_ns) if namespaced else None
        new_meta = dict(meta)
        if namespaced:
            new_meta["namespace"] = namespace
        else:
            new_meta.pop("namespace", None)  # kubectl ignores it too; the URL has no namespace
        prepared_obj = dict(obj)
        prepared_obj["metadata"] = new_meta
        ref = ObjectRef(api_version=api_version, kind=kind, namespace=namespace, name=name)
        key = ref.key
        if key in seen:
            other = seen[key].source
            out.errors.append(
                _error(manifest, f"{ref} is declared twice (also in {other.file})", "Duplicate")
            )
            continue
        seen[key] = manifest
        label = str(ref)
        try:
            cluster.target.check(kind=kind, namespace=namespace, name=name, label=label)
            prepared_obj = applyset.label_member(prepared_obj, ref=label)
        except KubeError as exc:
            out.errors.append(_error(manifest, exc, ref=ref))
            continue
        out.items.append(
            Item(
                manifest=manifest,
                obj=prepared_obj,
                ref=ref,
                resource=resource,
                namespaced=namespaced,
                pending_kind=pending,
            )
        )
    _add_created_namespace(cluster, spec, out, seen)
    return out


def _add_created_namespace(
    cluster: Cluster,
    spec: AppSpecLike,
    out: Prepared,
    seen: dict[tuple[str, str, str, str], Manifest],
) -> None:
    """With ``createNamespace: true``, the app's Namespace as the first item, unless the app
    declares it itself. It is no member of the ApplySet, so no prune ever deletes it (deleting
    a namespace deletes everything in it, the app's ApplySet parent included)."""
    namespace = spec.namespace
    if not (spec.create_namespace and namespace) or ("", "Namespace", "", namespace) in seen:
        return
    obj: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    manifest = Manifest(app=spec.name, obj=obj, source=Source(file=CONFIG_FILE, line=spec.line))
    ref = ObjectRef(api_version="v1", kind="Namespace", namespace=None, name=namespace)
    try:
        resource = cluster.resource("v1", "Namespace")
        cluster.target.check(kind="Namespace", namespace=None, name=namespace, label=str(ref))
    except KubeError as exc:
        out.errors.append(_error(manifest, exc, ref=ref))
        return
    item = Item(
        manifest=manifest, obj=obj, ref=ref, resource=resource, namespaced=False, member=False
    )
    out.items.insert(0, item)


def _error(
    manifest: Manifest,
    exc: KubeError | str,
    reason: str | None = None,
    *,
    ref: ObjectRef | None = None,
) -> ObjectError:
    source = manifest.source
    ref = ref or manifest.ref
    if isinstance(exc, KubeError):
        return exc.to_object_error(ref, file=source.file, line=source.line)
    return ObjectError(message=exc, ref=ref, file=source.file, line=source.line, reason=reason)


def change_order(change: ObjectChange) -> tuple[str, str, str | None, str]:
    """The sort key of a change: its ref's own order (``ObjectRef``'s fields in turn), built
    once per change instead of twice per comparison."""
    ref = change.ref
    return (ref.api_version, ref.kind, ref.namespace, ref.name)


def namespaces_created(items: Iterable[Item]) -> set[str]:
    """Names of the Namespaces this change declares."""
    return {i.ref.name for i in items if i.ref.kind == "Namespace" and i.ref.group == ""}


# Below this many objects of one resource in one namespace, GET each; above it, one LIST is
# cheaper than many GETs (and far cheaper on the server).
LIST_THRESHOLD = 12


class LiveIndex:
    """The live objects for a set of items, fetched with as few requests as possible."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._objects: dict[tuple[str, str, str, str], Obj | None] = {}
        self._listed: dict[tuple[Resource, str | None], list[Obj]] = {}
        self.errors: dict[tuple[str, str, str, str], ApiError] = {}

    def fetch(self, items: Sequence[Item]) -> None:
        """Fetch the live state of ``items`` (missing objects map to None): one LIST per
        resource and namespace holding many of them, one GET for each of the rest."""
        groups: dict[tuple[Resource, str | None], list[Item]] = {}
        for item in items:
            if item.resource is not None and not item.pending_namespace:
                groups.setdefault((item.resource, item.ref.namespace), []).append(item)
        singles: list[Item] = []
        lists: list[tuple[Resource, str | None]] = []
        for key, members in groups.items():
            if len(members) >= LIST_THRESHOLD:
                lists.append(key)
            else:
                singles.extend(members)
        listed = self.cluster.list_many([(res, namespace, None) for res, namespace in lists])
        for key, found in zip(lists, listed, strict=True):
            if isinstance(found, ApiError):
                # a LIST may be forbidden where a GET is allowed: fall back to one GET each
                singles.extend(groups[key])
                continue
            self._listed[key] = found
            by_name = {str((o.get("metadata") or {}).get("name")): o for o in found}
            for item in groups[key]:
                self._objects[item.key] = by_name.get(item.ref.name)
        answers = self.cluster.get_many(
            [(item.resource, item.ref.namespace, item.ref.name) for item in singles]  # type: ignore[misc]
        )
        for item, answer in zip(singles, answers, strict=True):
            if isinstance(answer, ApiError):
                self.errors[item.key] = answer
            else:
                self._objects[item.key] = answer

    def get(self, item: Item) -> Obj | None:
        return self._objects.get(item.key)

    def listed(self, res: Resource, namespace: str | None) -> list[Obj] | None:
        """A full LIST done earlier for this resource and namespace, if any."""
        return self._listed.get((res, namespace))


def list_members(
    cluster: Cluster,
    applyset: ApplySet,
    *,
    group_kinds: Iterable[str],
    namespaces: Iterable[str],
    live: LiveIndex | None = None,
) -> tuple[list[tuple[Resource, Obj]], list[ObjectError]]:
    """Every live member of the ApplySet among the given kinds and namespaces (a LIST done
    for ``live`` is filtered rather than asked again)."""
    queries: list[tuple[Resource, str | None]] = []
    for gk in sorted(set(group_kinds)):
        group, kind = split_group_kind(gk)
        res = cluster.mapper.for_group_kind(group, kind)
        if res is None:
            continue  # the kind is gone (its CRD was deleted): nothing of it can be left
        if res.namespaced:
            queries.extend((res, ns) for ns in sorted(set(namespaces)))
        else:
            queries.append((res, None))
    found_by_query: list[list[Obj] | ApiError | None] = [
        live.listed(res, namespace) if live is not None else None for res, namespace in queries
    ]
    asking = [n for n, found in enumerate(found_by_query) if found is None]
    answers = cluster.list_many([(*queries[n], applyset.selector) for n in asking])
    for n, answer in zip(asking, answers, strict=True):
        found_by_query[n] = answer
    members: list[tuple[Resource, Obj]] = []
    errors: list[ObjectError] = []
    for (res, namespace), found in zip(queries, found_by_query, strict=True):
        if isinstance(found, ApiError):
            where = f" in namespace {namespace}" if namespace else ""
            errors.append(
                ObjectError(
                    message=f"cannot list {res.plural}{where} to find pruned objects: {found}",
                    reason=found.reason or None,
                    transient=found.transient,
                )
            )
            continue
        # a LIST done for the live index holds every object: keep the set's members
        members += [
            (res, o)
            for o in found or ()
            if ((o.get("metadata") or {}).get("labels") or {}).get(PART_OF_LABEL) == applyset.id
        ]
    return members, errors
