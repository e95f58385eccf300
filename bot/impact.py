"""What a change does beyond its diff: whose change each object is, and which workloads restart.

Two pure analyses a preview job runs on objects it already holds, so reviewers judge what the
pull request does and see its blast radius before reading any diff:

* :func:`classify_origins` separates, in a live preview, the PR's own changes (base → merge
  result) from drift: objects whose live state already differs from what the *base* declares,
  which merging overwrites too. It compares three states of each object — the base rendered,
  the merge result rendered, and the cluster — through the diffs the engines already make:
  the offline diff (base → merge result), the live diff (cluster → merge result) and, for the
  few objects both of those change, the live diff of the base (cluster → base).
  :func:`objects_needing_base_dry_run` names those objects.
* :func:`workload_restarts` lists the Deployments, StatefulSets and DaemonSets whose pods the
  change replaces: their pod template changes, directly or because a ConfigMap or Secret they
  read changed its name (Kustomize's hash-suffixed generator names), and those that read a
  ConfigMap or Secret changed in place, which Kubernetes does *not* restart for.

No I/O: objects and :mod:`bot.model` results in, results out. Nothing here ever reads or prints
a Secret's value: Secrets are compared through :func:`bot.diff.mask_secrets`, and reasons name
objects and fields only.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bot.diff import mask_secrets
from bot.model import AppResult, Change, Obj, ObjectChange, ObjectRef, Origin, Restart

__all__ = [
    "WORKLOAD_KINDS",
    "classify_origins",
    "config_references",
    "objects_needing_base_dry_run",
    "workload_restarts",
]

Key = tuple[str, str, str, str]

# -- the PR's own changes apart from drift ------------------------------------------------------


def _by_key(app: AppResult | None) -> dict[Key, ObjectChange]:
    return {c.ref.key: c for c in app.changes} if app is not None else {}


def _changed(change: ObjectChange | None) -> bool:
    return change is not None and change.change is not Change.UNCHANGED


def objects_needing_base_dry_run(*, pr: AppResult, live: AppResult) -> list[ObjectRef]:
    """The objects that both the PR (``pr``: base → merge result, offline) and the cluster
    (``live``: cluster → merge result) change, updates on both sides: only for these does
    :func:`classify_origins` need the cluster compared with the base, i.e. a server-side dry-run
    of the base's version of the object. Every other object is classified from the two diffs."""
    pr_changes = _by_key(pr)
    return [
        c.ref
        for c in live.changes
        if c.change is Change.UPDATE
        and _changed(pr_changes.get(c.ref.key))
        and pr_changes[c.ref.key].change is Change.UPDATE
    ]


def _changed_lines(diff: str) -> Counter[str]:
    """The added and removed lines of a unified diff (file headers and hunk lines left out)."""
    lines: Counter[str] = Counter()
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk = True
            continue
        if in_hunk and line[:1] in ("+", "-"):
            lines[line] += 1
    return lines


def classify_origins(
    *, pr: AppResult, live: AppResult, base_live: AppResult | None = None
) -> AppResult:
    """``live`` with every change's :class:`~bot.model.Origin` set: whose change it is.

    ``pr`` is the offline diff of the app (base → merge result), ``live`` the live preview
    (cluster → merge result), ``base_live`` the live diff of the base's version of the objects
    that :func:`objects_needing_base_dry_run` names (cluster → base); entries for other objects
    are ignored. Per object:

    * the PR does not change it and the cluster does → DRIFT; ``drift_diff`` is the live diff
      (the base and the merge result declare the same object);
    * the PR changes it, the cluster differs from the merge result, and the cluster equals the
      base (``base_live`` has it UNCHANGED) → PR; created and deleted objects are PR too
      (nothing in the cluster to have drifted, or about to be deleted anyway);
    * both: the PR changes it and ``base_live`` shows the cluster already differs from the
      base → BOTH, with ``pr_diff`` (what the PR does) and ``drift_diff`` (what the cluster has
      that the base does not declare); an object the base does not declare but the cluster
      already holds is BOTH too, its ``drift_diff`` the whole live diff;
    * the PR changes it but the cluster already holds the merge result → UNCHANGED with origin
      PR (merging changes nothing there); so is a PR deletion of an object already gone;
    * when ``base_live`` lacks an object both change (its dry-run failed), the two diffs decide:
      the same added and removed lines mean PR, otherwise BOTH with ``drift_diff`` the whole
      live diff — never a drift hidden as the PR's change.

    ``pr_diff`` is set for origins PR and BOTH, ``drift_diff`` for DRIFT and BOTH. Errors,
    health and notes of ``live`` are kept; the inputs are not modified."""
    pr_changes = _by_key(pr)
    base_changes = _by_key(base_live)
    seen: set[Key] = set()
    out: list[ObjectChange] = []
    for change in live.changes:
        key = change.ref.key
        seen.add(key)
        own = pr_changes.get(key)
        if not _changed(own):
            origin = Origin.DRIFT if _changed(change) else None
            drift_diff = change.diff if origin is Origin.DRIFT else ""
            out.append(dataclasses.replace(change, origin=origin, drift_diff=drift_diff))
            continue
        assert own is not None
        if not _changed(change):
            out.append(dataclasses.replace(change, origin=Origin.PR, pr_diff=own.diff))
            continue
        origin, drift_diff = _both_changed(own, change, base_changes.get(key))
        out.append(
            dataclasses.replace(change, origin=origin, pr_diff=own.diff, drift_diff=drift_diff)
        )
    # A PR deletion the live preview does not list: the object is already gone from the
    # cluster (or was never deployed). Creations and updates always have a live entry unless
    # their dry-run failed, and then the live errors say so: those are not "already there".
    app_failed = any(e.ref is None for e in live.errors)
    for key, own in pr_changes.items():
        if key in seen or own.change is not Change.DELETE or app_failed:
            continue
        out.append(
            ObjectChange(
                ref=own.ref,
                change=Change.UNCHANGED,
                source=own.source,
                origin=Origin.PR,
                pr_diff=own.diff,
            )
        )
    return dataclasses.replace(live, changes=out)


def _both_changed(
    own: ObjectChange, live: ObjectChange, base: ObjectChange | None
) -> tuple[Origin, str]:
    """Origin and drift diff of an object both the PR and the live diff change."""
    if own.change is Change.DELETE or (
        own.change is Change.CREATE and live.change is Change.CREATE
    ):
        return Origin.PR, ""
    if own.change is Change.CREATE:
        # the base does not declare it, yet the cluster holds it: merging takes it over
        return Origin.BOTH, live.diff
    if base is not None:
        if base.change is Change.UNCHANGED:
            return Origin.PR, ""
        return Origin.BOTH, base.diff or live.diff
    if _changed_lines(own.diff) == _changed_lines(live.diff):
        return Origin.PR, ""
    return Origin.BOTH, live.diff


# -- which workloads restart ----------------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_WORKLOAD_GROUPS = ("apps", "extensions")
_CONFIG_KINDS = {"ConfigMap": "config map", "Secret": "secret"}
# Kustomize's generator suffix: the first 10 hex digits of a hash with 0,1,3,a,e replaced by
# g,h,k,m,t (sigs.k8s.io/kustomize/api/hasher), so it never spells a word.
_KUSTOMIZE_SUFFIX = re.compile(r"^(?P<stem>.+)-[245-9bcdfghkmt]{10}$")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
MAX_PATHS = 3

TEMPLATE_CHANGED = "pod template changed: {paths}"
MORE_PATHS = "{paths} and {count} more"
CONFIG_RENAMED = "{word} {stem} changed"
CONFIG_CHANGED = "{word} {name} changed"
CONFIG_IN_PLACE = (
    "{word} {name} changed in place: no restart (mounted files update after a delay, except "
    "subPath mounts; environment variables keep their old values until the pods restart)"
)
ON_DELETE = "update strategy OnDelete: pods are replaced only when deleted"
PAUSED = "the Deployment is paused: the rollout starts when it is resumed"
NO_REPLICAS = "0 replicas: no pod to replace"
RECREATE = "strategy Recreate: every pod stops before the new ones start"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _reference_slots(template: Obj) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every place a pod template names a ConfigMap or Secret: (kind, the mapping holding the
    name, the key of the name), so the caller can read or rewrite it."""
    spec = _dict(template.get("spec"))
    for volume in _list(spec.get("volumes")):
        volume = _dict(volume)
        if "configMap" in volume:
            yield "ConfigMap", _dict(volume["configMap"]), "name"
        if "secret" in volume:
            yield "Secret", _dict(volume["secret"]), "secretName"
        for source in _list(_dict(volume.get("projected")).get("sources")):
            source = _dict(source)
            if "configMap" in source:
                yield "ConfigMap", _dict(source["configMap"]), "name"
            if "secret" in source:
                yield "Secret", _dict(source["secret"]), "name"
    for list_name in _CONTAINER_LISTS:
        for container in _list(spec.get(list_name)):
            container = _dict(container)
            for source in _list(container.get("envFrom")):
                source = _dict(source)
                if "configMapRef" in source:
                    yield "ConfigMap", _dict(source["configMapRef"]), "name"
                if "secretRef" in source:
                    yield "Secret", _dict(source["secretRef"]), "name"
            for env in _list(container.get("env")):
                value_from = _dict(_dict(env).get("valueFrom"))
                if "configMapKeyRef" in value_from:
                    yield "ConfigMap", _dict(value_from["configMapKeyRef"]), "name"
                if "secretKeyRef" in value_from:
                    yield "Secret", _dict(value_from["secretKeyRef"]), "name"


def config_references(template: Obj) -> set[tuple[str, str]]:
    """The (kind, name) of every ConfigMap and Secret a pod template mounts (volumes, projected
    volumes) or reads by name (``envFrom``, ``env[].valueFrom``)."""
    return {
        (kind, str(holder[key]))
        for kind, holder, key in _reference_slots(template)
        if isinstance(holder.get(key), str)
    }


def _stem(name: str) -> str | None:
    match = _KUSTOMIZE_SUFFIX.match(name)
    return match.group("stem") if match else None


def _renames(
    old: set[tuple[str, str]], new: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """Generator names whose hash changed: old (kind, name) → new (kind, name), paired by kind
    and name without the suffix, only where the pairing is unambiguous."""
    gone: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for kind, name in old - new:
        stem = _stem(name)
        if stem:
            gone.setdefault((kind, stem), []).append((kind, name))
    came: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for kind, name in new - old:
        stem = _stem(name)
        if stem:
            came.setdefault((kind, stem), []).append((kind, name))
    return {
        olds[0]: came[pair][0]
        for pair, olds in gone.items()
        if len(olds) == 1 and len(came.get(pair, [])) == 1
    }


def _renamed(template: Obj, renames: Mapping[tuple[str, str], tuple[str, str]]) -> Obj:
    out: Obj = copy.deepcopy(template)
    for kind, holder, key in _reference_slots(out):
        target = renames.get((kind, str(holder.get(key))))
        if target is not None:
            holder[key] = target[1]
    return out


_MISSING = object()
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _join(path: str, key: object) -> str:
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{text}]"


def _named(items: list[Any]) -> dict[str, Any] | None:
    """A list of mappings with distinct ``name`` keys (containers, volumes, env) by name."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        if item["name"] in out:
            return None
        out[item["name"]] = item
    return out


def _changed_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two values differ, as readable paths (list items by ``name`` where they have one).
    Only paths: a value is never part of the answer."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted({*old, *new}, key=str):
            paths += _changed_paths(
                old.get(key, _MISSING), new.get(key, _MISSING), _join(path, key)
            )
        return paths
    if isinstance(old, list) and isinstance(new, list):
        old_named, new_named = _named(old), _named(new)
        if old_named is not None and new_named is not None:
            paths = []
            for name in sorted({*old_named, *new_named}):
                paths += _changed_paths(
                    old_named.get(name, _MISSING), new_named.get(name, _MISSING), f"{path}[{name}]"
                )
            return paths
        if len(old) == len(new):
            paths = []
            for index, (a, b) in enumerate(zip(old, new, strict=True)):
                paths += _changed_paths(a, b, f"{path}[{index}]")
            return paths
    return [path or "(the whole template)"]


def _paths_text(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_PATHS])
    if len(paths) > MAX_PATHS:
        return MORE_PATHS.format(paths=shown, count=len(paths) - MAX_PATHS)
    return shown


def _config_content(obj: Obj) -> tuple[Any, ...]:
    return (obj.get("data"), obj.get("binaryData"))


def _config_changed(old: Obj, new: Obj) -> bool:
    """Whether a ConfigMap's or Secret's content differs. Secrets are compared through their
    masked forms (which differ exactly when a key or a value does), never by reading values."""
    if old.get("kind") == "Secret" or new.get("kind") == "Secret":
        masked_old, masked_new = mask_secrets(old, new)
        assert masked_old is not None and masked_new is not None
        return (masked_old.get("data"), old.get("type")) != (
            masked_new.get("data"),
            new.get("type"),
        )
    return _config_content(old) != _config_content(new)


def _is_workload(ref: ObjectRef) -> bool:
    return ref.kind in WORKLOAD_KINDS and ref.group in _WORKLOAD_GROUPS


def _held_back(workload: Obj) -> str | None:
    """Why a pod template change replaces no pod, or None when it rolls out."""
    kind = workload.get("kind")
    spec = _dict(workload.get("spec"))
    if kind in ("StatefulSet", "DaemonSet"):
        if _dict(spec.get("updateStrategy")).get("type") == "OnDelete":
            return ON_DELETE
        return None
    if spec.get("paused") is True:
        return PAUSED
    if spec.get("replicas") == 0:
        return NO_REPLICAS
    return None


def workload_restarts(before: Iterable[Obj], after: Iterable[Obj]) -> list[Restart]:
    """The workloads whose pods the change from ``before`` to ``after`` affects, sorted.

    ``before`` and ``after`` are the objects on each side: the base's and the merge result's
    rendered objects (offline), or the live objects and their dry-run answers (live). Only
    Deployments, StatefulSets and DaemonSets present on both sides are considered (a new one
    starts, a removed one stops: the diff shows both). A workload is listed when:

    * its pod template (``spec.template``) changes → ``restart=True``, with the reasons: each
      Kustomize generator ConfigMap/Secret whose hash-suffixed name changed ("config map
      app-config changed"), then the other changed template fields as paths ("pod template
      changed: spec.containers[api].image"), then every ConfigMap/Secret it reads whose
      content changed (the new pods read the new content); a template change that replaces no
      pod (``OnDelete`` update strategy, a paused Deployment, 0 replicas) is ``restart=False``
      with the reason; a Recreate Deployment says every pod stops first;
    * its template is the same but a ConfigMap or Secret it mounts or reads by name changed in
      place → ``restart=False``: Kubernetes does not restart pods for that; mounted files follow
      after a delay and environment variables only at the next restart.

    ConfigMaps and Secrets are matched in the workload's namespace. Reasons name objects and
    fields, never a value."""
    old_index = {ObjectRef.of(o).key: o for o in before if isinstance(o, dict)}
    new_index = {ObjectRef.of(o).key: o for o in after if isinstance(o, dict)}
    restarts: list[Restart] = []
    for key, new in new_index.items():
        ref = ObjectRef.of(new)
        old = old_index.get(key)
        if old is None or not _is_workload(ref):
            continue
        restart = _workload_restart(ref, old, new, old_index, new_index)
        if restart is not None:
            restarts.append(restart)
    restarts.sort(key=lambda r: r.ref.key)
    return restarts


def _workload_restart(
    ref: ObjectRef,
    old: Obj,
    new: Obj,
    old_index: Mapping[Key, Obj],
    new_index: Mapping[Key, Obj],
) -> Restart | None:
    old_template = _dict(_dict(old.get("spec")).get("template"))
    new_template = _dict(_dict(new.get("spec")).get("template"))
    old_refs, new_refs = config_references(old_template), config_references(new_template)
    reasons: list[str] = []
    template_changed = old_template != new_template
    if template_changed:
        renames = _renames(old_refs, new_refs)
        for (kind, old_name), _new in sorted(renames.items()):
            reasons.append(
                CONFIG_RENAMED.format(word=_CONFIG_KINDS[kind], stem=_stem(old_name) or old_name)
            )
        paths = _changed_paths(_renamed(old_template, renames), new_template)
        if paths:
            reasons.append(TEMPLATE_CHANGED.format(paths=_paths_text(paths)))
    namespace = ref.namespace or ""
    in_place: list[tuple[str, str]] = []
    for kind, name in sorted(new_refs & old_refs):
        config_key = ("", kind, namespace, name)
        old_config, new_config = old_index.get(config_key), new_index.get(config_key)
        if (
            old_config is not None
            and new_config is not None
            and _config_changed(old_config, new_config)
        ):
            in_place.append((kind, name))
    if not template_changed and not in_place:
        return None
    if not template_changed:
        reasons = [
            CONFIG_IN_PLACE.format(word=_CONFIG_KINDS[kind], name=name) for kind, name in in_place
        ]
        return Restart(ref=ref, reasons=tuple(reasons), restart=False)
    reasons += [
        CONFIG_CHANGED.format(word=_CONFIG_KINDS[kind], name=name) for kind, name in in_place
    ]
    held_back = _held_back(new)
    if held_back is not None:
        return Restart(ref=ref, reasons=(*reasons, held_back), restart=False)
    if new.get("kind") == "Deployment":
        strategy = _dict(_dict(new.get("spec")).get("strategy")).get("type")
        if strategy == "Recreate":
            reasons.append(RECREATE)
    return Restart(ref=ref, reasons=tuple(reasons), restart=True)
