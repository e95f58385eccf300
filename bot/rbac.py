"""The Kubernetes rights a repository's apps need, worked out from what they declare.

Pure: from rendered apps (:func:`bot.manifests.render_apps`) to a list of :class:`Need` s, and
from those to RBAC objects ready to apply (:func:`rbac_manifests`). ``gitops-bot doctor``
checks the same needs against a cluster with SelfSubjectAccessReviews
(:mod:`bot.cluster.access`), so what it prints and what it checks cannot disagree.

What the bot does with an app, and so what it needs (docs/deploy.md, "RBAC"):

* each declared kind, in each namespace the app's objects live in: ``get`` and ``list`` (live
  diff, prune candidates, health), ``patch`` (server-side apply, the preview's dry run
  included) and ``create`` (a server-side apply that creates is authorized as ``create``), and
  ``delete`` when the app prunes;
* its ApplySet parent, the Secret ``gitops-bot.<app>`` in the app's namespace: ``get``,
  ``create``, ``patch`` on that name;
* with ``createNamespace``: ``get``, ``create``, ``patch`` on that Namespace, by name;
* for Deployments, StatefulSets and DaemonSets, ``list`` on their pods and their ReplicaSets or
  ControllerRevisions: the health wait names the pods that stall a rollout (optional: without
  it the wait judges the workload by its status alone).

Declared Namespaces are limited to their names too (``list`` cannot be: it goes in a rule of its
own), so the bot cannot delete a namespace it does not manage. Rules name the resource (the
plural); a CustomResourceDefinition in the repository gives its plural, other kinds' plurals
come from the cluster's discovery when doctor has one, else are guessed as kubectl guesses
them (and marked so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.cluster.applyset import parent_name
from bot.manifests import DEFAULT_NAMESPACE, RenderedApp
from bot.manifests.scopes import group_of

OBJECT_VERBS = ("get", "list", "create", "patch")
PRUNE_VERBS = ("delete",)
PARENT_VERBS = ("get", "create", "patch")
CREATE_NAMESPACE_VERBS = ("get", "create", "patch")
VERB_ORDER = ("get", "list", "create", "patch", "delete")
RBAC_GROUP = "rbac.authorization.k8s.io"


class Why:
    """Why the bot needs a right (the doctor's table says it)."""

    DECLARED = "declared"
    PARENT = "applyset-parent"
    CREATE_NAMESPACE = "create-namespace"
    HEALTH = "health"  # optional: naming the pods that stall a rollout


#: What the health wait lists besides a workload (bot.cluster.rollout): its pods, and the
#: ReplicaSets (Deployment) or ControllerRevisions (DaemonSet) that tell the new pods apart.
HEALTH_LISTS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("apps", "Deployment"): (("v1", "Pod"), ("apps/v1", "ReplicaSet")),
    ("apps", "StatefulSet"): (("v1", "Pod"),),
    ("apps", "DaemonSet"): (("v1", "Pod"), ("apps/v1", "ControllerRevision")),
}


@dataclass(frozen=True)
class Need:
    """Verbs the bot needs on one kind in one namespace (None: cluster-scoped) of one target,
    optionally only on the objects ``names``."""

    target: str
    api_version: str
    kind: str
    namespace: str | None
    verbs: tuple[str, ...]
    names: tuple[str, ...] = ()
    why: str = Why.DECLARED
    apps: tuple[str, ...] = ()
    #: The resource (plural) when the repository says it (its own CRD); else None.
    plural: str | None = None

    @property
    def group(self) -> str:
        return group_of(self.api_version)


def guess_plural(kind: str) -> str:
    """kubectl's guess of a resource from its kind without discovery
    (``meta.UnsafeGuessKindToResource``): lower case, then ``-s`` → ``-ses``, ``-y`` →
    ``-ies``, else ``+s``; ``Endpoints`` stays as it is."""
    lower = kind.lower()
    if not lower or lower == "endpoints":
        return lower
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _crd_plurals(rendered: Iterable[RenderedApp]) -> dict[tuple[str, str], str]:
    plurals: dict[tuple[str, str], str] = {}
    for app in rendered:
        for manifest in app.manifests:
            obj = manifest.obj
            if obj.get("kind") != "CustomResourceDefinition":
                continue
            spec = _mapping(obj.get("spec"))
            names = _mapping(spec.get("names"))
            group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
            if isinstance(group, str) and isinstance(kind, str) and isinstance(plural, str):
                plurals[(group, kind)] = plural
    return plurals


@dataclass
class _Acc:
    api_version: str
    verbs: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)


def needs(rendered: Sequence[RenderedApp]) -> list[Need]:
    """What the apps in ``rendered`` need, merged per target, kind, namespace and reason, in a
    stable order (target, namespace, group, kind)."""
    plurals = _crd_plurals(rendered)
    acc: dict[tuple[str, str, str, str | None, str, bool], _Acc] = {}

    def add(
        target: str,
        api_version: str,
        kind: str,
        namespace: str | None,
        verbs: Iterable[str],
        *,
        app: str,
        why: str = Why.DECLARED,
        name: str | None = None,
    ) -> None:
        key = (target, group_of(api_version), kind, namespace, why, name is not None)
        entry = acc.setdefault(key, _Acc(api_version))
        entry.verbs.update(verbs)
        entry.apps.add(app)
        if name is not None:
            entry.names.add(name)

    for app in rendered:
        spec = app.spec
        target = spec.target
        own_namespace = spec.namespace or DEFAULT_NAMESPACE
        verbs = OBJECT_VERBS + (PRUNE_VERBS if spec.prune else ())
        for manifest in app.manifests:
            obj = manifest.obj
            api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
            meta = _mapping(obj.get("metadata"))
            namespace = meta.get("namespace") or None
            if group_of(api_version) == "" and kind == "Namespace":
                # by name, so the bot cannot touch (or delete) namespaces it does not declare
                named = tuple(v for v in verbs if v != "list")
                add(target, api_version, kind, None, named, app=spec.name, name=str(meta["name"]))
                add(target, api_version, kind, None, ("list",), app=spec.name)
                continue
            add(target, api_version, kind, namespace, verbs, app=spec.name)
            for listed_version, listed_kind in HEALTH_LISTS.get((group_of(api_version), kind), ()):
                add(
                    target,
                    listed_version,
                    listed_kind,
                    namespace,
                    ("list",),
                    app=spec.name,
                    why=Why.HEALTH,
                )
        add(
            target,
            "v1",
            "Secret",
            own_namespace,
            PARENT_VERBS,
            app=spec.name,
            why=Why.PARENT,
            name=parent_name(spec.name),
        )
        if spec.create_namespace and spec.namespace:
            add(
                target,
                "v1",
                "Namespace",
                None,
                CREATE_NAMESPACE_VERBS,
                app=spec.name,
                why=Why.CREATE_NAMESPACE,
                name=spec.namespace,
            )
    found = [
        Need(
            target=target,
            api_version=entry.api_version,
            kind=kind,
            namespace=namespace,
            verbs=tuple(v for v in VERB_ORDER if v in entry.verbs),
            names=tuple(sorted(entry.names)),
            why=why,
            apps=tuple(sorted(entry.apps)),
            plural=plurals.get((group, kind)),
        )
        for (target, group, kind, namespace, why, _named), entry in acc.items()
    ]
    return sorted(found, key=lambda n: (n.target, n.namespace or "", n.group, n.kind, n.why))


def namespaces_of(needs_: Iterable[Need]) -> list[str]:
    """The namespaces ``needs_`` touch, sorted."""
    return sorted({n.namespace for n in needs_ if n.namespace})


# --- RBAC objects ------------------------------------------------------------------------------


def _rules(needs_: Iterable[Need], plural_of: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """Rules grouping resources that share group, verbs and names."""
    grouped: dict[tuple[str, tuple[str, ...], tuple[str, ...]], set[str]] = {}
    for need in needs_:
        resource = need.plural or plural_of.get((need.group, need.kind)) or guess_plural(need.kind)
        grouped.setdefault((need.group, need.verbs, need.names), set()).add(resource)
    rules = []
    for (group, verbs, names), resources in sorted(grouped.items()):
        rule: dict[str, Any] = {"apiGroups": [group], "resources": sorted(resources)}
        if names:
            rule["resourceNames"] = list(names)
        rule["verbs"] = list(verbs)
        rules.append(rule)
    return rules


def _merge_verbs(needs_: Iterable[Need]) -> list[Need]:
    """One need per kind, namespace and names: verbs of needs with the same key united (a
    declared Secret and the ApplySet parent stay apart only when the parent is by name)."""
    merged: dict[tuple[str, str, str | None, tuple[str, ...]], Need] = {}
    for need in needs_:
        key = (need.group, need.kind, need.namespace, need.names)
        if key in merged:
            old = merged[key]
            verbs = tuple(v for v in VERB_ORDER if v in set(old.verbs) | set(need.verbs))
            merged[key] = Need(
                target=old.target,
                api_version=old.api_version,
                kind=old.kind,
                namespace=old.namespace,
                verbs=verbs,
                names=old.names,
                why=old.why,
                apps=tuple(sorted(set(old.apps) | set(need.apps))),
                plural=old.plural or need.plural,
            )
        else:
            merged[key] = need
    # a parent Secret needs no rule of its own where the app's Secrets rule already covers it
    covered = {
        (n.namespace, v)
        for n in merged.values()
        if n.group == "" and n.kind == "Secret" and not n.names
        for v in n.verbs
    }
    return [
        n
        for n in merged.values()
        if not (n.why == Why.PARENT and all((n.namespace, v) in covered for v in n.verbs))
    ]


BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy"})


def is_builtin_group(group: str) -> bool:
    """Whether ``group`` is one of Kubernetes' own API groups (whose plurals kubectl's guess
    gets right), as opposed to a custom resource's."""
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


def guessed_kinds(needs_: Iterable[Need], plural_of: dict[tuple[str, str], str]) -> list[str]:
    """``Kind.group`` of the custom kinds whose plural was guessed (no CRD in the repository,
    no discovery), for a warning in the output."""
    found = set()
    for need in needs_:
        if need.plural or (need.group, need.kind) in plural_of or is_builtin_group(need.group):
            continue
        found.add(f"{need.kind}.{need.group}")
    return sorted(found)


def rbac_manifests(
    needs_: Sequence[Need],
    *,
    service_account: tuple[str, str],
    plural_of: dict[tuple[str, str], str] | None = None,
) -> str:
    """The Roles, RoleBindings, ClusterRole and ClusterRoleBinding granting ``needs_`` (of one
    target) to ``service_account`` (namespace, name), as a YAML stream ready for
    ``kubectl apply -f -``, with comments saying what each part is for."""
    plural_of = plural_of or {}
    sa_namespace, sa_name = service_account
    subject = [{"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}]
    merged = _merge_verbs(needs_)
    docs: list[tuple[str, dict[str, Any]]] = []
    created = sorted({name for n in merged if n.why == Why.CREATE_NAMESPACE for name in n.names})
    for namespace in namespaces_of(merged):
        here = [n for n in merged if n.namespace == namespace]
        apps = sorted({a for n in here for a in n.apps})
        comment = (
            f"# Namespace {namespace}: what apps {', '.join(apps)} declare there, and their "
            "ApplySet parents."
        )
        if namespace in created:
            comment += (
                "\n# createNamespace makes this namespace: RBAC cannot grant rights in a "
                "namespace that does not exist,\n# so apply this Role and RoleBinding once it "
                "does (or grant these rules cluster-wide)."
            )
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": sa_name, "namespace": namespace},
            "rules": _rules(here, plural_of),
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": sa_name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa_name},
            "subjects": subject,
        }
        docs += [(comment, role), ("", binding)]
    cluster = [n for n in merged if n.namespace is None]
    if cluster:
        apps = sorted({a for n in cluster for a in n.apps})
        comment = f"# Cluster-scoped objects of apps {', '.join(apps)}"

        if created:
            comment += f"; the namespaces createNamespace makes ({', '.join(created)}), by name"
        comment += "."
        if any(n.group == RBAC_GROUP for n in merged):
            comment += (
                "\n# With RBAC objects among them: Kubernetes lets the bot grant only rights it "
                "holds itself, so\n# the repository's authors can hand out what the bot may do "
                "(docs/deploy.md, RBAC)."
            )
        name = f"{sa_name}-cluster"
        docs.append(
            (
                comment,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": name},
                    "rules": _rules(cluster, plural_of),
                },
            )
        )
        docs.append(
            (
                "",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": name,
                    },
                    "subjects": subject,
                },
            )
        )
    parts = []
    for comment, doc in docs:
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
        parts.append(f"{comment}\n{text}" if comment else text)
    return "---\n".join(parts)
