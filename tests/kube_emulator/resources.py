"""Resource types the emulator serves: names, scope, verbs and the discovery documents built from them.

Built-in kinds are listed in BUILTIN; CustomResourceDefinitions add types at run time
(see ``ResourceType.from_crd``). Discovery answers (/api, /apis, /api/v1, /apis/{g}/{v}) are
computed from whatever types are registered at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
VERBS_NO_COLLECTION = ("create", "delete", "get", "list", "patch", "update", "watch")
VERBS_SUB = ("get", "patch", "update")

# Kinds whose metadata.generation the real registries maintain (bumped on spec changes).
_GENERATION_KINDS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "CustomResourceDefinition",
        "Pod",
        "HorizontalPodAutoscaler",
    }
)


@dataclass
class ResourceType:
    """One served resource (group/version/plural) and what discovery says about it."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS_ALL
    crd: bool = False
    # For custom resources: the version's openAPIV3Schema (defaults, pruning, validation).
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    # For custom resources: list types from the schema (x-kubernetes-list-type/-map-keys) for merging.
    list_types: dict[str, Any] | None = None
    # For a CRD version marked ``deprecated``: the Warning every request to it gets.
    deprecation_warning: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def group_resource(self) -> str:
        """How error messages name the resource: ``deployments.apps``, ``namespaces``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """How Invalid errors name the kind: ``Deployment.apps``, ``Service``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects are stored per group and plural, whatever the version."""
        return (self.group, self.plural)

    @property
    def has_generation(self) -> bool:
        return self.crd or self.kind in _GENERATION_KINDS

    def discovery_entries(self) -> list[dict[str, Any]]:
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        main["storageVersionHash"] = _hash(f"{self.group}/{self.version}/{self.kind}")
        out = [main]
        for sub in self.subresources:
            entry: dict[str, Any] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(VERBS_SUB),
            }
            if sub == "scale":
                entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            out.append(entry)
        return out

    def aggregated_entry(self) -> dict[str, Any]:
        """This resource in aggregated discovery (APIResourceDiscovery)."""
        entry: dict[str, Any] = {
            "resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        subs = []
        for sub in self.subresources:
            kind = (
                {"group": "autoscaling", "version": "v1", "kind": "Scale"}
                if sub == "scale"
                else {
                    "group": self.group,
                    "version": self.version,
                    "kind": self.kind,
                }
            )
            subs.append({"subresource": sub, "responseKind": kind, "verbs": list(VERBS_SUB)})
        if subs:
            entry["subresources"] = subs
        return entry

    @classmethod
    def from_crd(cls, crd: dict[str, Any], version: dict[str, Any]) -> ResourceType:
        spec = crd["spec"]
        names = spec["names"]
        subs: list[str] = []
        sr = version.get("subresources") or {}
        if "status" in sr:
            subs.append("status")
        if "scale" in sr:
            subs.append("scale")
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        return cls(
            group=spec["group"],
            version=version["name"],
            kind=names["kind"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            subresources=tuple(subs),
            categories=tuple(names.get("categories") or ()),
            crd=True,
            schema=schema,
            printer_columns=list(version.get("additionalPrinterColumns") or []),
            deprecation_warning=_deprecation_warning(spec, version),
        )


def _deprecation_warning(spec: dict[str, Any], version: dict[str, Any]) -> str | None:
    """apiextensions' words for a deprecated version: its own ``deprecationWarning``, or
    "<group>/<version> <Kind> is deprecated; use <group>/<newest served> <Kind>"."""
    if not version.get("deprecated"):
        return None
    if version.get("deprecationWarning"):
        return str(version["deprecationWarning"])
    from .crd import version_priority

    group, kind = spec["group"], spec["names"]["kind"]
    text = f"{group}/{version['name']} {kind} is deprecated"
    current = sorted(
        (
            v["name"]
            for v in spec.get("versions") or ()
            if v.get("served", True) and not v.get("deprecated")
        ),
        key=version_priority,
    )
    return f"{text}; use {group}/{current[0]} {kind}" if current else text


def _hash(text: str) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(text.encode()).digest()[:8]).decode()


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    subs: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    verbs: tuple[str, ...] = VERBS_ALL,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        subresources=subs,
        categories=cats,
        verbs=verbs,
    )


ALL = ("all",)

BUILTIN: tuple[ResourceType, ...] = (
    _rt(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short=("ns",),
        subs=("finalize", "status"),
        verbs=VERBS_NO_COLLECTION,
    ),
    _rt("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    _rt("", "v1", "Secret", "secrets"),
    _rt(
        "",
        "v1",
        "Service",
        "services",
        short=("svc",),
        subs=("proxy", "status"),
        cats=ALL,
        verbs=VERBS_ALL,
    ),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",), subs=("token",)),
    _rt("", "v1", "Pod", "pods", short=("po",), subs=("status", "log"), cats=ALL),
    _rt(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short=("pvc",),
        subs=("status",),
    ),
    _rt("", "v1", "Event", "events", short=("ev",)),
    _rt("", "v1", "Endpoints", "endpoints", short=("ep",)),
    _rt("", "v1", "Node", "nodes", namespaced=False, short=("no",), subs=("status",)),
    _rt(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        namespaced=False,
        short=("pv",),
        subs=("status",),
    ),
    _rt("", "v1", "LimitRange", "limitranges", short=("limits",)),
    _rt("", "v1", "ResourceQuota", "resourcequotas", short=("quota",), subs=("status",)),
    _rt(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short=("deploy",),
        subs=("scale", "status"),
        cats=ALL,
    ),
    _rt(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short=("sts",),
        subs=("scale", "status"),
        cats=ALL,
    ),
    _rt("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), subs=("status",), cats=ALL),
    _rt(
        "apps", "v1", "ReplicaSet", "replicasets", short=("rs",), subs=("scale", "status"), cats=ALL
    ),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _rt("batch", "v1", "Job", "jobs", subs=("status",), cats=ALL),
    _rt("batch", "v1", "CronJob", "cronjobs", short=("cj",), subs=("status",), cats=ALL),
    _rt("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",), subs=("status",)),
    _rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=("netpol",)),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _rt(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    _rt(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short=("hpa",),
        subs=("status",),
        cats=ALL,
    ),
    _rt(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short=("pdb",),
        subs=("status",),
    ),
    _rt("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=("sc",)),
    _rt(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        namespaced=False,
        short=("pc",),
    ),
    # Reviews: answered, never stored (see Emulator._review).
    _rt(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        namespaced=False,
        verbs=("create",),
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        namespaced=False,
        verbs=("create",),
    ),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short=("crd", "crds"),
        subs=("status",),
        cats=("api-extensions",),
    ),
)


class Registry:
    """The types served right now, looked up by (group, version, plural) and by kind."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._order: list[ResourceType] = []
        for rt in BUILTIN:
            self.add(rt)
        self._builtin_count = len(self._order)

    def add(self, rt: ResourceType) -> None:
        k = (rt.group, rt.version, rt.plural)
        if k in self._by_path:
            self._order = [r for r in self._order if (r.group, r.version, r.plural) != k]
        self._by_path[k] = rt
        self._order.append(rt)

    def remove_group_plural(self, group: str, plural: str) -> None:
        self._order = [r for r in self._order if not (r.group == group and r.plural == plural)]
        self._by_path = {
            k: v for k, v in self._by_path.items() if not (k[0] == group and k[2] == plural)
        }

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def for_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rt in self._order:
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._order)

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions (first is preferred), core group excluded."""
        out: dict[str, list[str]] = {}
        for rt in self._order:
            if rt.group:
                versions = out.setdefault(rt.group, [])
                if rt.version not in versions:
                    versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._order if rt.group == group and rt.version == version]
