"""Pure merge algorithms for the Kubernetes API emulator: server-side apply and the three patch types.

What is emulated (checked against kubernetes-sigs/structured-merge-diff and the apiserver's
fieldmanager, see the comments at each step):

* ``apply`` — server-side apply of one configuration by one field manager: live object merged
  with the configuration (associative lists merged by key, keeping the live order the way
  structured-merge-diff's two-pointer merge does), fields the manager applied last time and
  nobody owns any more are removed, conflicts with other managers' fields are collected and
  raised as ``ApplyConflict`` (message and causes worded as kube-apiserver words them), and with
  ``force`` the ownership of conflicting fields moves to the applier.
* ``track_update`` — ownership bookkeeping for every write that is not an apply (POST, PUT,
  merge/JSON/strategic patch, status and scale updates): the writer takes the fields it changed
  or added, removed fields leave every manager; a create is compared with the kind's Go zero
  value (so ``.`` marks match a real cluster); an existing object nobody tracks stays untracked;
  more than ten Update entries fold into ``ancient-changes``.
* the apiserver's wrappers around them: ``before-first-apply`` (the first apply to an untracked
  object), and kubectl's client-side to server-side upgrade (manager ``kubectl`` may take
  fields whose live value is still the one in the last-applied annotation, and keeps that
  annotation up to date).
* ``strategic_merge_patch`` — a port of apimachinery's strategicpatch (server side): merge keys
  from the Go struct tags, patch-order list merging, ``$patch``, ``$retainKeys``,
  ``$setElementOrder``, ``$deleteFromPrimitiveList``; ``json_merge_patch`` (RFC 7386) and
  ``json_patch`` (RFC 6902, messages worded like evanphx/json-patch).

``metadata.managedFields`` entries are written as the real server writes them (FieldsV1 with
``f:``/``k:``/``v:`` path elements, ``.`` for a node that is itself owned, elements sorted as the
real serializer sorts them, entries sorted Apply first then by time, manager, apiVersion).

What is not emulated: a real OpenAPI schema. The type of a list (atomic, set, or associative and
its keys) and of a few atomic maps (label selectors, ``nodeSelector``, ``secretKeyRef``...) comes
from a small table keyed by field names, applied to the built-in API groups only; for custom
resources every list is atomic (as for a CRD schema without ``x-kubernetes-list-type``) unless the
caller passes ``list_types`` (``crd_list_types`` derives them from a CRD schema). Version
conversion, unions, and patchStrategy ``replace`` on maps are not emulated. Resetting fields per
subresource is partly left to the caller: ``apply(..., reset_status=True)`` for the main resource
of a kind with a status subresource, ``subresource="status"`` for status writes.

Every function is pure: inputs are never mutated and results never share structure with them,
with one exception: the ``fieldsV1`` values of managedFields entries are shared (between an
object, its successors, and objects whose field sets are alike) and must be treated as read-only.

Speed (the emulator's CPU per write bounds every benchmark run against it): an apply compares
live and merged objects only at the paths other managers own (nothing at all when there are
none), entries remember their decoded field sets (``_EncodedEntry``) and re-use their encoding
while unchanged, encodings of equal field sets are cached, and status or annotation writes of
``track_update`` compare just that field (``scope``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

try:  # a test-only speed-up (see _equal_objects); the walk alone gives the same answers
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

# isinstance with a tuple: ``dict | list`` builds a union object on every call (hot loops).
_CONTAINERS = (dict, list)

__all__ = [
    "KUBECTL_MANAGER",
    "LAST_APPLIED",
    "ApplyConflict",
    "FieldConflict",
    "PatchError",
    "apply",
    "crd_list_types",
    "decode_fields",
    "encode_fields",
    "json_merge_patch",
    "json_patch",
    "path_string",
    "strategic_merge_patch",
    "track_update",
]

JSON = Any
Path = tuple[str, ...]
"""A field path as a tuple of FieldsV1 path elements: ``("f:spec", "k:{\"name\":\"web\"}")``."""


class PatchError(ValueError):
    """A malformed patch or apply configuration; the message reads like the real server's."""


@dataclass
class FieldConflict:
    """One field another manager owns and an apply would change."""

    manager: str
    field: str
    operation: str = "Update"
    api_version: str = ""
    subresource: str = ""

    def manager_description(self) -> str:
        """The manager as kube-apiserver prints it (``printManager`` in the fieldmanager)."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


class ApplyConflict(Exception):
    """An apply changed fields owned by other managers and was not forced (HTTP 409)."""

    def __init__(self, conflicts: list[FieldConflict], api_version: str) -> None:
        self.conflicts = conflicts
        self.api_version = api_version
        for conflict in conflicts:
            if not conflict.api_version:
                conflict.api_version = api_version
        super().__init__(self.message())

    def message(self) -> str:
        """The Status message, word for word as ``getConflictMessage`` in the apiserver."""
        if len(self.conflicts) == 1:
            only = self.conflicts[0]
            return (
                f"Apply failed with 1 conflict: conflict with {only.manager_description()}: "
                f"{only.field}"
            )
        lines: list[str] = []
        for description, fields in self._grouped():
            lines.append(f"conflicts with {description}:")
            lines.extend(f"- {one}" for one in fields)
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        """The Status details causes, one per conflicting field."""
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {conflict.manager_description()}",
                "field": conflict.field,
            }
            for conflict in self.conflicts
        ]

    def _grouped(self) -> list[tuple[str, list[str]]]:
        # The real server groups by the manager's JSON identifier, sorted as strings.
        groups: dict[str, tuple[str, list[str]]] = {}
        for conflict in self.conflicts:
            key = _identifier(
                conflict.manager, conflict.operation, conflict.api_version, conflict.subresource
            )
            groups.setdefault(key, (conflict.manager_description(), []))[1].append(conflict.field)
        return [groups[key] for key in sorted(groups)]


# --------------------------------------------------------------------------------------------
# Schema-lite: what kind of list or map lives at a path
# --------------------------------------------------------------------------------------------

_ATOMIC: Final = "atomic"
_SET: Final = "set"

_CONTAINER_LISTS: Final = frozenset({"containers", "initContainers", "ephemeralContainers"})

# Associative lists of the built-in types (+listType=map / +listMapKey in the Go types).
_MAP_LIST_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}

# Key fields with a schema default: structured-merge-diff fills them in when an item omits them.
_KEY_DEFAULTS: Final[dict[str, JSON]] = {"protocol": "TCP"}

# Maps and structs marked +mapType=atomic / +structType=atomic (label selectors and references).
_ATOMIC_MAPS: Final = frozenset(
    {
        "selector",
        "podSelector",
        "namespaceSelector",
        "labelSelector",
        "nodeSelector",
        "secretKeyRef",
        "configMapKeyRef",
        "fieldRef",
        "resourceFieldRef",
    }
)

# Associative lists whose items are atomic structs.
_ATOMIC_ITEM_LISTS: Final = frozenset({"imagePullSecrets"})

# Strategic merge patch keys (patchMergeKey), a single field each, as in the Go struct tags.
_SMP_KEYS: Final[dict[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "ownerReferences": "uid",
    "secrets": "name",
}

# API groups served by kube-apiserver itself; anything else is a custom resource.
_BUILTIN_GROUPS: Final = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "storage.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "admissionregistration.k8s.io",
        "certificates.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "apiregistration.k8s.io",
    }
)

ListType = str | tuple[str, ...]
"""``"atomic"``, ``"set"``, or the key field names of an associative list."""


def _is_builtin(api_version: str) -> bool:
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return group in _BUILTIN_GROUPS


@lru_cache(maxsize=4096)
def _builtin_list_type(names: tuple[str, ...]) -> ListType:
    last = names[-1]
    if last == "ports":
        if any(name in _CONTAINER_LISTS for name in names):
            return ("containerPort", "protocol")
        if names == ("spec", "ports"):
            return ("port", "protocol")
        return _ATOMIC
    return _MAP_LIST_KEYS.get(last, _ATOMIC)


class _Schema:
    """Answers "what is at this path" from field names only (list items add no name)."""

    __slots__ = ("builtin", "extra")

    def __init__(self, builtin: bool, extra: Mapping[str, ListType] | None = None) -> None:
        self.builtin = builtin
        self.extra = extra or {}

    def list_type(self, names: tuple[str, ...]) -> ListType:
        if names[:1] == ("metadata",) and len(names) == 2:
            if names[1] == "finalizers":
                return _SET
            if names[1] == "ownerReferences":
                return ("uid",)
        if self.extra:
            found = self.extra.get(".".join(names))
            if found is not None:
                return found
        if not self.builtin or not names:
            return _ATOMIC
        return _builtin_list_type(names)

    def atomic_map(self, names: tuple[str, ...]) -> bool:
        if self.extra and self.extra.get(".".join(names)) == _ATOMIC:
            return True
        return self.builtin and bool(names) and names[-1] in _ATOMIC_MAPS

    def atomic_items(self, names: tuple[str, ...]) -> bool:
        """Whether the items of this associative list are atomic structs (OwnerReference and
        LocalObjectReference are +structType=atomic): owned and replaced whole."""
        if names == ("metadata", "ownerReferences"):
            return True
        return self.builtin and bool(names) and names[-1] in _ATOMIC_ITEM_LISTS


def crd_list_types(openapi_v3_schema: Mapping[str, Any] | None) -> dict[str, ListType]:
    """The ``list_types`` of a CRD version, from its openAPIV3Schema's extensions.

    ``x-kubernetes-list-type: map`` (with ``x-kubernetes-list-map-keys``) and ``set`` make a list
    granular; ``x-kubernetes-map-type: atomic`` makes an object atomic. Lists without an
    extension stay atomic, as on a real server.
    """
    out: dict[str, ListType] = {}
    if isinstance(openapi_v3_schema, Mapping):
        _walk_crd_schema(openapi_v3_schema, (), out)
    return out


def _walk_crd_schema(
    node: Mapping[str, Any], names: tuple[str, ...], out: dict[str, ListType]
) -> None:
    dotted = ".".join(names)
    if names and node.get("x-kubernetes-map-type") == "atomic":
        out[dotted] = _ATOMIC
    list_type = node.get("x-kubernetes-list-type")
    if names and list_type == "set":
        out[dotted] = _SET
    elif names and list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys")
        if isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys):
            out[dotted] = tuple(sorted(keys))
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        for name, child in properties.items():
            if isinstance(child, Mapping):
                _walk_crd_schema(child, (*names, str(name)), out)
    items = node.get("items")
    if isinstance(items, Mapping):
        _walk_crd_schema(items, names, out)  # list items add no name to the path


def _schema_for(
    obj: Mapping[str, Any] | None, list_types: Mapping[str, ListType] | None
) -> _Schema:
    api_version = str((obj or {}).get("apiVersion") or "")
    return _Schema(_is_builtin(api_version), list_types)


# --------------------------------------------------------------------------------------------
# Path elements
# --------------------------------------------------------------------------------------------


def _dumps(value: JSON) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _key_element(item: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The ``k:{...}`` element of an associative-list item, or None if a key field is missing."""
    values: list[JSON] = []
    for key in keys:
        value = item.get(key)
        if value is not None:
            values.append(value)
        elif key in _KEY_DEFAULTS:
            values.append(_KEY_DEFAULTS[key])
        else:
            return None
    try:
        # The types go into the cache key too: True == 1 for hashing, not for JSON.
        return _key_text(keys, tuple(values), tuple(map(type, values)))
    except TypeError:  # an unhashable key value (a map or list): rare, not worth caching
        return "k:" + _dumps(dict(zip(keys, values, strict=True)))


@lru_cache(maxsize=65536)
def _key_text(keys: tuple[str, ...], values: tuple[JSON, ...], types: tuple[type, ...]) -> str:
    return "k:" + _dumps(dict(zip(keys, values, strict=True)))


def _item_elements(items: list[Any], list_type: ListType) -> list[str] | None:
    """Path elements of the items of a granular list; None means "treat it as atomic"."""
    if list_type == _SET:
        out = []
        for item in items:
            if isinstance(item, _CONTAINERS):
                return None
            out.append("v:" + _dumps(item))
        return out
    assert isinstance(list_type, tuple)
    elements = []
    for item in items:
        if not isinstance(item, dict):
            return None
        element = _key_element(item, list_type)
        if element is None:
            return None
        elements.append(element)
    return elements


def _value_sort_key(value: JSON) -> tuple[Any, ...]:
    # value.Compare in structured-merge-diff: null < bool < number < string < list < map.
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, list):
        return (4, tuple(_value_sort_key(v) for v in value))
    return (5, tuple((k, _value_sort_key(v)) for k, v in sorted(value.items())))


@lru_cache(maxsize=65536)
def _element_sort_key(element: str) -> tuple[Any, ...]:
    """PathElement.Compare: field names, then keys, then values, then indexes."""
    kind, text = element[:2], element[2:]
    if kind == "f:":
        return (0, text)
    if kind == "k:":
        decoded = json.loads(text)
        return (1, tuple((k, _value_sort_key(decoded[k])) for k in sorted(decoded)))
    if kind == "v:":
        return (2, _value_sort_key(json.loads(text)))
    if kind == "i:":
        return (3, int(text))
    return (4, element)


@lru_cache(maxsize=65536)
def _element_string(element: str) -> str:
    """PathElement.String: ``.name``, ``[name="web"]``, ``[=value]``, ``[3]``."""
    kind, text = element[:2], element[2:]
    if kind == "f:":
        return "." + text
    if kind == "k:":
        decoded = json.loads(text)
        return "[" + ",".join(f"{k}={_dumps(decoded[k])}" for k in sorted(decoded)) + "]"
    if kind == "v:":
        return f"[={text}]"
    if kind == "i:":
        return f"[{text}]"
    return element


def item_element(names: tuple[str, ...], item: Any, index: int) -> str:
    """How structured-merge-diff names item ``index`` of the built-in list at field names
    ``names`` in its messages: ``[name="app"]`` (associative), ``[="a"]`` (set) or ``[0]``."""
    list_type = _Schema(True).list_type(names)
    if isinstance(list_type, tuple) and isinstance(item, dict):
        element = _key_element(item, list_type)
        if element is not None:
            return _element_string(element)
    if list_type == _SET and not isinstance(item, _CONTAINERS):
        return _element_string("v:" + _dumps(item))
    return f"[{index}]"


def path_string(path: Path) -> str:
    """A field path as the real server prints it, e.g. ``.spec.replicas``."""
    return "".join(_element_string(element) for element in path)


def _iterate_sort_key(path: Path) -> tuple[Any, ...]:
    # Set.Iterate visits a node's members before descending into its children.
    return tuple(
        (0 if index == len(path) - 1 else 1, _element_sort_key(element))
        for index, element in enumerate(path)
    )


# --------------------------------------------------------------------------------------------
# FieldsV1 encoding
# --------------------------------------------------------------------------------------------


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """A set of paths as FieldsV1 JSON, sorted and with ``.`` as the real serializer writes it."""
    root: dict[str, Any] = {}
    members: set[int] = set()
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        members.add(id(node))
    return _emit(root, members)


@lru_cache(maxsize=4096)
def _encode_shared(paths: frozenset[Path]) -> dict[str, Any]:
    """``encode_fields`` for managedFields entries, cached: objects of one shape (the same
    labels, keys and containers) share one FieldsV1 value, which nothing ever mutates."""
    return encode_fields(paths)


def _emit(node: dict[str, Any], members: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node and id(node) in members:
        out["."] = {}
    for element in sorted(node, key=_element_sort_key):
        out[element] = _emit(node[element], members)
    return out


def decode_fields(fields: Mapping[str, Any] | None) -> set[Path]:
    """FieldsV1 JSON back into a set of paths."""
    out: set[Path] = set()
    if fields:
        _collect(fields, (), out)
    return out


def _collect(node: Mapping[str, Any], prefix: Path, out: set[Path]) -> None:
    for element, child in node.items():
        if element == ".":
            out.add(prefix)
        elif isinstance(child, Mapping) and child:
            _collect(child, (*prefix, element), out)
        else:
            out.add((*prefix, element))


def _with_named_fields(paths: Set[Path]) -> set[Path]:
    """EnsureNamedFieldsAreMembers: a struct field with owned children counts as owned itself."""
    out = set(paths)
    for path in paths:
        for index in range(1, len(path)):
            if path[index - 1].startswith("f:"):
                out.add(path[:index])
    return out


# Fields the apiserver's stripMeta manager never records (and never reports as conflicts).
_IGNORED_PATHS: Final[frozenset[Path]] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:clusterName"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:managedFields"),
        ("f:metadata", "f:resourceVersion"),
    }
)


def _strip_ignored(paths: Set[Path]) -> set[Path]:
    # Every caller walks objects stripped of metadata.managedFields (_without_managed_fields),
    # so no path lies below it: the set difference is all there is to do.
    return set(paths - _IGNORED_PATHS)


# --------------------------------------------------------------------------------------------
# Object walks: field sets, comparison, merge, removal
# --------------------------------------------------------------------------------------------


def _copy(value: JSON) -> JSON:
    """A deep copy of a JSON value (much faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: _copy(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def _equal(left: JSON, right: JSON) -> bool:
    """JSON equality: like ==, except that booleans never equal numbers."""
    if left is right:
        return True
    if isinstance(left, dict):
        if not isinstance(right, dict) or len(left) != len(right):
            return False
        for key, value in left.items():
            if key not in right or not _equal(value, right[key]):
                return False
        return True
    if isinstance(left, list):
        if not isinstance(right, list) or len(left) != len(right):
            return False
        return all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(right, _CONTAINERS):
        return False
    return bool(left == right)


def _equal_objects(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """``_equal`` of two objects that ``==`` already found equal (a no-op apply), with a quick
    yes: the same canonical JSON text means the same values, booleans included (``true`` is
    not ``1``). Texts that differ (``1`` and ``1.0``, ``true`` and ``1``) leave it to the walk."""
    if orjson is not None:
        try:
            if orjson.dumps(left, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
                right, option=orjson.OPT_SORT_KEYS
            ):
                return True
        except TypeError:  # e.g. an integer beyond 64 bits
            pass
    return _equal(left, right)


class _Missing:
    """A field absent from an object (as opposed to present with a null value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Final = _Missing()


def _to_field_set(obj: Mapping[str, Any], schema: _Schema, *, strict: bool) -> set[Path]:
    """ToFieldSet: the leaves, atomic values and list items of an (apply) object."""
    out: set[Path] = set()
    _fields_of_map(obj, (), (), schema, out, strict)
    return out


def _fields_of_map(
    obj: Mapping[str, Any],
    path: Path,
    names: tuple[str, ...],
    schema: _Schema,
    out: set[Path],
    strict: bool,
) -> None:
    for key, value in obj.items():
        if isinstance(value, _CONTAINERS):
            _fields_of_value(value, (*path, "f:" + key), (*names, key), schema, out, strict)
        else:  # a scalar is a leaf (the common case: no call, no names)
            out.add((*path, "f:" + key))


def _fields_and_copy(
    obj: Mapping[str, Any],
    path: Path,
    names: tuple[str, ...],
    schema: _Schema,
    out: set[Path],
) -> dict[str, Any]:
    """``_merge_maps({}, obj)`` and ``_fields_of_map(obj, strict=True)`` in one walk: what an
    apply over nothing (a create) makes and owns. Null values are owned, not kept, in granular
    maps; atomic maps and lists are copied as they are."""
    copy: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            child_path = (*path, "f:" + key)
            child_names = (*names, key)
            if not value or schema.atomic_map(child_names):
                out.add(child_path)
                copy[key] = _copy(value)
            else:
                copy[key] = _fields_and_copy(value, child_path, child_names, schema, out)
        elif isinstance(value, list):
            _fields_of_value(value, (*path, "f:" + key), (*names, key), schema, out, True)
            copy[key] = _copy(value)
        else:
            out.add((*path, "f:" + key))
            if value is not None:
                copy[key] = value
    return copy


def _fields_of_value(
    value: JSON,
    path: Path,
    names: tuple[str, ...],
    schema: _Schema,
    out: set[Path],
    strict: bool,
) -> None:
    if isinstance(value, dict):
        # Atomic maps, and empty maps, are leaves (ToFieldSet keeps `strategy: {}` owned).
        if not value or schema.atomic_map(names):
            out.add(path)
        else:
            _fields_of_map(value, path, names, schema, out, strict)
        return
    if isinstance(value, list):
        list_type = schema.list_type(names)
        if list_type == _ATOMIC:
            out.add(path)
            return
        elements = _item_elements(value, list_type)
        if elements is None:
            if strict:
                raise PatchError(_bad_list_message(value, path, list_type))
            out.add(path)
            return
        if strict and len(set(elements)) != len(elements):
            raise PatchError(_duplicate_message(elements, path))
        granular_items = not schema.atomic_items(names)
        for element, item in zip(elements, value, strict=True):
            item_path = (*path, element)
            out.add(item_path)
            if granular_items and isinstance(item, dict):
                _fields_of_map(item, item_path, names, schema, out, strict)
        return
    out.add(path)


def _bad_list_message(items: list[Any], path: Path, list_type: ListType) -> str:
    where = path_string(path)
    if list_type == _SET:
        return f"{where}: set lists may only contain scalar values"
    assert isinstance(list_type, tuple)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return f"{where}: element {index}: associative list may only contain maps"
        for key in list_type:
            if item.get(key) is None and key not in _KEY_DEFAULTS:
                return (
                    f"{where}: element {index}: associative list with keys has an element that "
                    f'omits key field "{key}" (and doesn\'t have default value)'
                )
    return f"{where}: invalid associative list"


def _duplicate_message(elements: list[str], path: Path) -> str:
    seen: set[str] = set()
    for element in elements:
        if element in seen:
            return f"{path_string(path)}: duplicate entries for key {_element_string(element)}"
        seen.add(element)
    return f"{path_string(path)}: duplicate entries"


class _Comparison:
    """typed.Compare: which paths were added, modified and removed from ``old`` to ``new``.

    A ``trie`` (see ``_path_tree``) restricts the walk to the paths in it and their ancestors:
    the sets then hold exactly the paths of the full comparison that lie on those walks, which
    is all an apply needs to update the other managers' fields (it never looks at the rest).
    """

    __slots__ = ("added", "modified", "removed", "schema")

    def __init__(self, schema: _Schema) -> None:
        self.schema = schema
        self.added: set[Path] = set()
        self.modified: set[Path] = set()
        self.removed: set[Path] = set()

    def leaf(
        self,
        old: JSON,
        new: JSON,
        path: Path,
        names: tuple[str, ...] = (),
        trie: Mapping[str, Any] | None = None,
    ) -> None:
        if old is _MISSING:
            self.added.add(path)
        elif new is _MISSING:
            self.removed.add(path)
        elif not _equal(old, new):
            self.modified.add(path)

    def node(
        self,
        old: JSON,
        new: JSON,
        path: Path,
        names: tuple[str, ...],
        trie: Mapping[str, Any] | None = None,
    ) -> None:
        probe = new if new is not _MISSING and new is not None else old
        if isinstance(probe, dict) and not self.schema.atomic_map(names):
            old_map = old if isinstance(old, dict) else None
            new_map = new if isinstance(new, dict) else None
            if (old is not _MISSING and old is not None and old_map is None) or (
                new is not _MISSING and new is not None and new_map is None
            ):
                self.leaf(old, new, path)  # a type change: the whole value differs
                return
            if not old_map and not new_map:
                self.leaf(old, new, path)  # empty maps are leaves (emptyPromoteToLeaf)
                return
            if old_map is not new_map:  # the very same map has no differences
                self.maps(old_map or {}, new_map or {}, path, names, trie)
            self.post(old, new, path)
            return
        if isinstance(probe, list):
            list_type = self.schema.list_type(names)
            if list_type != _ATOMIC and self.lists(old, new, path, names, list_type, trie):
                self.post(old, new, path)
                return
        self.leaf(old, new, path)

    def post(self, old: JSON, new: JSON, path: Path) -> None:
        # postItemHook: a granular node that appears or disappears is itself added or removed.
        if old is _MISSING:
            self.added.add(path)
        elif new is _MISSING:
            self.removed.add(path)

    def maps(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: Path,
        names: tuple[str, ...],
        trie: Mapping[str, Any] | None = None,
    ) -> None:
        if trie is not None:
            for element, sub in trie.items():
                if element[:2] != "f:":
                    continue
                key = element[2:]
                old_value = old.get(key, _MISSING)
                new_value = new.get(key, _MISSING)
                if old_value is not _MISSING or new_value is not _MISSING:
                    self.node(old_value, new_value, (*path, element), (*names, key), sub)
            return
        for key, old_value in old.items():
            self.node(old_value, new.get(key, _MISSING), (*path, "f:" + key), (*names, key))
        for key, new_value in new.items():
            if key not in old:
                self.node(_MISSING, new_value, (*path, "f:" + key), (*names, key))

    def lists(
        self,
        old: JSON,
        new: JSON,
        path: Path,
        names: tuple[str, ...],
        list_type: ListType,
        trie: Mapping[str, Any] | None = None,
    ) -> bool:
        old_items = old if isinstance(old, list) else []
        new_items = new if isinstance(new, list) else []
        if (old is not _MISSING and old is not None and not isinstance(old, list)) or (
            new is not _MISSING and new is not None and not isinstance(new, list)
        ):
            return False
        if not old_items and not new_items:
            return False
        old_elements = _item_elements(old_items, list_type)
        new_elements = _item_elements(new_items, list_type)
        if old_elements is None or new_elements is None:
            return False
        old_by = dict(zip(old_elements, old_items, strict=True))
        new_by = dict(zip(new_elements, new_items, strict=True))
        if len(old_by) != len(old_items) or len(new_by) != len(new_items):
            return False  # duplicates: compare the list as a whole
        visit = self.leaf if self.schema.atomic_items(names) else self.item
        if trie is not None:
            for element, sub in trie.items():
                old_item = old_by.get(element, _MISSING)
                new_item = new_by.get(element, _MISSING)
                if old_item is not _MISSING or new_item is not _MISSING:
                    visit(old_item, new_item, (*path, element), names, sub)
            return True
        for element, old_item in old_by.items():
            new_item = new_by.get(element, _MISSING)
            visit(old_item, new_item, (*path, element), names)
        for element, new_item in new_by.items():
            if element not in old_by:
                visit(_MISSING, new_item, (*path, element), names)
        return True

    def item(
        self,
        old: JSON,
        new: JSON,
        path: Path,
        names: tuple[str, ...],
        trie: Mapping[str, Any] | None = None,
    ) -> None:
        probe = new if new is not _MISSING else old
        if isinstance(probe, dict):
            self.maps(
                old if isinstance(old, dict) else {},
                new if isinstance(new, dict) else {},
                path,
                names,
                trie,
            )
            self.post(old, new, path)
        else:
            self.leaf(old, new, path)


def _compare(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    schema: _Schema,
    trie: Mapping[str, Any] | None = None,
) -> _Comparison:
    comparison = _Comparison(schema)
    comparison.maps(old, new, (), (), trie)
    return comparison


def _compare_within(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    schema: _Schema,
    scope: tuple[str, ...] | None,
) -> _Comparison:
    """``_compare`` of the field at ``scope`` alone (the whole objects without a scope): the
    paths the full comparison finds there, and none elsewhere."""
    if not scope:
        return _compare(old, new, schema)
    old_parent: Any = old
    new_parent: Any = new
    for name in scope[:-1]:
        old_parent = old_parent.get(name) if isinstance(old_parent, dict) else None
        new_parent = new_parent.get(name) if isinstance(new_parent, dict) else None
        if not isinstance(old_parent, dict) or not isinstance(new_parent, dict):
            return _compare(old, new, schema)  # a parent appears or goes: compare it all
    last = scope[-1]
    comparison = _Comparison(schema)
    comparison.node(
        old_parent.get(last, _MISSING),
        new_parent.get(last, _MISSING),
        tuple("f:" + name for name in scope),
        scope,
    )
    return comparison


def _merge_value(live: JSON, config: JSON, names: tuple[str, ...], schema: _Schema) -> JSON:
    """TypedValue.Merge: the configuration wins; granular maps and lists merge recursively."""
    if isinstance(config, dict) and not schema.atomic_map(names):
        return _merge_maps(live if isinstance(live, dict) else {}, config, names, schema)
    if isinstance(config, list) and isinstance(live, list) and live:
        list_type = schema.list_type(names)
        if list_type != _ATOMIC:
            merged = _merge_lists(live, config, names, schema, list_type)
            if merged is not None:
                return merged
    return _copy(config)


def _merge_maps(
    live: Mapping[str, Any], config: Mapping[str, Any], names: tuple[str, ...], schema: _Schema
) -> dict[str, Any]:
    # Scalars (most values) are taken as they are, without a call.
    out: dict[str, Any] = {}
    for key, value in live.items():
        if key not in config:
            out[key] = _copy(value) if isinstance(value, _CONTAINERS) else value
        else:
            wanted = config[key]
            if wanted is None:
                continue
            if isinstance(wanted, _CONTAINERS):
                out[key] = _merge_value(value, wanted, (*names, key), schema)
            else:
                out[key] = wanted
    for key, value in config.items():
        if value is not None and key not in live:
            if isinstance(value, _CONTAINERS):
                out[key] = _merge_value(_MISSING, value, (*names, key), schema)
            else:
                out[key] = value
    return out


def _merge_lists(
    live: list[Any],
    config: list[Any],
    names: tuple[str, ...],
    schema: _Schema,
    list_type: ListType,
) -> list[Any] | None:
    """mergingWalker.visitListItems: the config's order for shared items, live-only items kept
    in place, new items where the config puts them."""
    lhs_elements = _item_elements(live, list_type)
    rhs_elements = _item_elements(config, list_type)
    if lhs_elements is None or rhs_elements is None:
        return None
    observed_lhs: dict[str, Any] = {}
    for element, item in zip(lhs_elements, live, strict=True):
        observed_lhs.setdefault(element, item)
    observed_rhs: dict[str, Any] = {}
    for element, item in zip(rhs_elements, config, strict=True):
        observed_rhs.setdefault(element, item)

    atomic_items = schema.atomic_items(names)

    def merge_item(left: JSON, right: JSON) -> JSON:
        if right is _MISSING:
            return _copy(left)
        if left is _MISSING:
            return _copy(right)
        if isinstance(left, dict) and isinstance(right, dict) and not atomic_items:
            return _merge_maps(left, right, names, schema)
        return _copy(right)

    shared = [element for element in rhs_elements if element in observed_lhs]
    shared_index = 0
    next_shared = shared[0] if shared else None
    shared_index = 1
    merged_rhs: set[str] = set()
    out: list[Any] = []
    left_index, right_index = 0, 0
    left_len, right_len = len(lhs_elements), len(rhs_elements)
    while left_index < left_len or right_index < right_len:
        if left_index < left_len and right_index < right_len:
            element = lhs_elements[left_index]
            if element == rhs_elements[right_index]:
                merged_rhs.add(element)
                out.append(merge_item(observed_lhs[element], observed_rhs[element]))
                left_index += 1
                right_index += 1
                next_shared = shared[shared_index] if shared_index < len(shared) else None
                shared_index += 1
                continue
            if element in observed_rhs and next_shared is not None and next_shared != element:
                left_index += 1
                continue
        if left_index < left_len:
            element = lhs_elements[left_index]
            if element not in observed_rhs:
                out.append(merge_item(live[left_index], _MISSING))
                left_index += 1
                continue
            if element in merged_rhs:
                left_index += 1
                continue
        if right_index < right_len:
            element = rhs_elements[right_index]
            merged_rhs.add(element)
            out.append(merge_item(observed_lhs.get(element, _MISSING), observed_rhs[element]))
            right_index += 1
            if next_shared is not None and next_shared == element:
                next_shared = shared[shared_index] if shared_index < len(shared) else None
                shared_index += 1
    return out


def _path_tree(paths: Iterable[Path]) -> dict[str, Any]:
    """Paths as a trie; a node holding the key ``"."`` is itself in the set."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        node["."] = True
    return root


def _remove_paths(
    obj: dict[str, Any], tree: Mapping[str, Any], names: tuple[str, ...], schema: _Schema
) -> None:
    """RemoveItems, in place: drop every value whose path is in ``tree`` (with its subtree)."""
    for key in list(obj):
        sub = tree.get("f:" + key)
        if sub is None:
            continue
        if "." in sub:
            del obj[key]
            continue
        value = obj[key]
        child_names = (*names, key)
        if isinstance(value, dict):
            _remove_paths(value, sub, child_names, schema)
        elif isinstance(value, list):
            list_type = schema.list_type(child_names)
            if list_type == _ATOMIC:
                continue
            elements = _item_elements(value, list_type)
            if elements is None:
                continue
            kept = []
            for element, item in zip(elements, value, strict=True):
                item_tree = sub.get(element)
                if item_tree is None:
                    kept.append(item)
                elif "." not in item_tree:
                    if isinstance(item, dict):
                        _remove_paths(item, item_tree, child_names, schema)
                    kept.append(item)
            value[:] = kept


# --------------------------------------------------------------------------------------------
# managedFields entries
# --------------------------------------------------------------------------------------------


def _identifier(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """BuildManagerIdentifier: the JSON of the entry without fields and time (and without the
    apiVersion for appliers), which is also the order conflicts are printed in."""
    ident: dict[str, str] = {"manager": manager, "operation": operation}
    if operation != "Apply" and api_version:
        ident["apiVersion"] = api_version
    if subresource:
        ident["subresource"] = subresource
    return json.dumps(ident, separators=(",", ":"), ensure_ascii=False)


class _EncodedEntry(dict[str, Any]):
    """A managedFields entry as ``_Entry.encode`` writes it, remembering the field set its
    ``fieldsV1`` encodes, so the next write to the object need not decode (nor, if the set is
    unchanged, re-encode) it. Written objects are never mutated (the store's rule), so the
    ``fieldsV1`` value is shared between an object and its successors; a copy of the entry
    (a plain dict) is simply decoded again."""

    __slots__ = ("fields_v1", "paths")

    fields_v1: Any
    paths: frozenset[Path]


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path] | frozenset[Path] = field(default_factory=set)
    # The fieldsV1 this entry was read from and the set it decodes to, reused while unchanged.
    source: tuple[Any, frozenset[Path]] | None = None

    def same_owner(self, manager: str, operation: str, api_version: str, subresource: str) -> bool:
        if (self.manager, self.operation, self.subresource) != (manager, operation, subresource):
            return False
        return operation == "Apply" or self.api_version == api_version

    def encode(self) -> dict[str, Any]:
        out = _EncodedEntry(
            manager=self.manager, operation=self.operation, apiVersion=self.api_version
        )
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        source = self.source
        if source is not None and (self.fields is source[1] or self.fields == source[1]):
            out["fieldsV1"], out.paths = source
        else:
            out.paths = frozenset(self.fields)
            out["fieldsV1"] = _encode_shared(out.paths)
        out.fields_v1 = out["fieldsV1"]
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_entries(obj: Mapping[str, Any] | None) -> list[_Entry]:
    metadata = (obj or {}).get("metadata") or {}
    entries = []
    for raw in metadata.get("managedFields") or []:
        if not isinstance(raw, dict):
            continue
        fields_v1 = raw.get("fieldsV1")
        if isinstance(raw, _EncodedEntry) and raw.fields_v1 is fields_v1:
            paths = raw.paths
        else:
            paths = frozenset(decode_fields(fields_v1))
        entries.append(
            _Entry(
                manager=str(raw.get("manager", "")),
                operation=str(raw.get("operation", "Update")),
                api_version=str(raw.get("apiVersion", "")),
                time=raw.get("time"),
                subresource=str(raw.get("subresource") or ""),
                fields=paths,
                source=(fields_v1, paths),
            )
        )
    return entries


def _sorted_entries(entries: list[_Entry]) -> list[dict[str, Any]]:
    """sortEncodedManagedFields: operation, then time, manager, apiVersion, subresource."""
    kept = [entry for entry in entries if entry.fields]
    kept.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [entry.encode() for entry in kept]


def _without_managed_fields(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """A shallow view of ``obj`` without metadata.managedFields (only top and metadata copied)."""
    if not obj:
        return {}
    out = dict(obj)
    metadata = out.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        metadata = dict(metadata)
        del metadata["managedFields"]
        out["metadata"] = metadata
    return out


def _set_managed_fields(obj: dict[str, Any], entries: list[_Entry]) -> None:
    encoded = _sorted_entries(entries)
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        obj["metadata"] = metadata
    metadata.pop("managedFields", None)
    if encoded:
        metadata["managedFields"] = encoded


# --------------------------------------------------------------------------------------------
# Server-side apply
# --------------------------------------------------------------------------------------------

BEFORE_FIRST_APPLY: Final = "before-first-apply"


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    manager: str,
    force: bool,
    now: str,
    list_types: Mapping[str, ListType] | None = None,
    subresource: str | None = None,
    reset_status: bool = False,
) -> dict[str, Any]:
    """Server-side apply ``config`` as ``manager`` over ``live`` (None: create).

    Returns the new object with ``metadata.managedFields`` rewritten. Raises ``ApplyConflict``
    when fields owned by other managers would change and ``force`` is false, and ``PatchError``
    for an invalid configuration (a list item without its key, duplicate keys).
    ``list_types`` maps dotted field names (``"spec.items"``) to ``"atomic"``, ``"set"`` or key
    names, for custom resources whose schema declares ``x-kubernetes-list-type``.
    ``subresource="status"`` applies only the config's ``.status`` (the entry records the
    subresource); ``reset_status=True`` is for the main resource of a kind with a status
    subresource: the config's ``.status`` is then ignored, neither written nor owned.
    """
    if not isinstance(config, dict):
        raise PatchError("apply configuration must be an object")
    api_version = str(config.get("apiVersion") or (live or {}).get("apiVersion") or "")
    schema = _Schema(_is_builtin(api_version), list_types)
    sub = subresource or ""
    cfg = _without_managed_fields(config)
    if sub == "status":
        # The status subresource resets everything but .status (fieldmanager reset fields).
        raw_metadata = cfg.get("metadata")
        identity: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        cfg = {key: cfg[key] for key in ("apiVersion", "kind", "status") if key in cfg}
        cfg["metadata"] = {key: identity[key] for key in ("name", "namespace") if key in identity}
    elif reset_status:
        cfg.pop("status", None)
    live_obj = _without_managed_fields(live)
    entries = _decode_entries(live)
    if live is not None and not entries:
        # An object nobody tracked yet: the apiserver first records its whole content as owned
        # by "before-first-apply" (fieldmanager skipNonAppliedManager / firstApply).
        zero = _zero_object(live_obj, schema)
        owned = _strip_ignored(_compare(zero, live_obj, schema).added)
        if owned:
            entries.append(
                _Entry(
                    BEFORE_FIRST_APPLY,
                    "Update",
                    str(live_obj.get("apiVersion") or api_version),
                    now,
                    "",
                    owned,
                )
            )

    if live_obj:
        merged = _merge_maps(live_obj, cfg, (), schema)
        full_set = _to_field_set(cfg, schema, strict=True)
    else:  # a create: one walk gives the object and its field set
        full_set = set()
        merged = _fields_and_copy(cfg, (), (), schema, full_set)
    config_set = _strip_ignored(full_set)

    mine = next((e for e in entries if e.same_owner(manager, "Apply", "", sub)), None)
    others = [e for e in entries if e is not mine]

    if mine is not None and mine.fields:
        # prune(): remove what this manager applied last time, applies no more, and nobody
        # (including the new configuration) owns.
        still_owned = set(full_set)
        for entry in others:
            still_owned |= entry.fields
        dropped = mine.fields - still_owned
        # Only paths under a dropped one can be left unowned; skip the expensive part otherwise.
        to_remove = (
            _with_named_fields(dropped) - _with_named_fields(still_owned) if dropped else set()
        )
        if to_remove:
            _remove_paths(merged, _path_tree(to_remove), (), schema)

    # What changed matters only where other managers own fields (their conflicts, and the
    # fields they lose): compare just those paths, and nothing when nobody else owns any.
    owned_by_others: set[Path] = set()
    for entry in others:
        owned_by_others |= entry.fields
    if owned_by_others:
        comparison = _compare(live_obj, merged, schema, _path_tree(owned_by_others))
        changed = _strip_ignored(comparison.added | comparison.modified)
        removed = comparison.removed
    else:
        changed, removed = set(), set()

    clashes: list[tuple[_Entry, Path]] = []
    for entry in others:
        clash = entry.fields & changed
        clashes.extend((entry, path) for path in sorted(clash, key=_iterate_sort_key))
    if clashes and not force and manager == KUBECTL_MANAGER and not sub:
        # lastAppliedManager: kubectl's upgrade from client-side apply. Conflicts on fields
        # whose live value is still the last-applied one are forced through.
        allowed = _allowed_from_last_applied(live_obj, api_version, schema)
        if allowed is not None:
            clashes = [(entry, path) for entry, path in clashes if path not in allowed]
            force = not clashes
    if clashes and not force:
        conflicts = [
            FieldConflict(
                manager=entry.manager,
                field=path_string(path),
                operation=entry.operation,
                api_version=entry.api_version,
                subresource=entry.subresource,
            )
            for entry, path in clashes
        ]
        conflicts.sort(
            key=lambda c: _identifier(c.manager, c.operation, c.api_version, c.subresource)
        )
        raise ApplyConflict(conflicts, api_version)

    for entry in others:
        if changed or removed:
            entry.fields = entry.fields - changed - removed

    # == settles most cases in C; _equal then only tells booleans from numbers
    object_changed = not (live_obj == merged and _equal_objects(live_obj, merged))
    if mine is None:
        mine = _Entry(manager, "Apply", api_version, now, sub, config_set)
        entries.append(mine)
    else:
        mine.fields = config_set
        mine.api_version = api_version
        if object_changed or mine.time is None:
            mine.time = now
    _set_managed_fields(merged, entries)
    if manager == KUBECTL_MANAGER and not sub and _last_applied(live_obj):
        # lastAppliedUpdater: kubectl's server-side apply keeps the client-side annotation in
        # step with what it applied, so a later client-side apply computes the right patch.
        annotations = merged["metadata"].setdefault("annotations", {})
        annotations[LAST_APPLIED] = _build_last_applied(cfg)
    return merged


LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL_MANAGER: Final = "kubectl"


def _last_applied(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else ""


def _allowed_from_last_applied(
    live: Mapping[str, Any], api_version: str, schema: _Schema
) -> set[Path] | None:
    """The fields of the last-applied annotation whose live value is still the applied one."""
    text = _last_applied(live)
    if not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    try:
        fields = _to_field_set(last, schema, strict=True)
    except PatchError:
        return None
    comparison = _compare(last, live, schema)
    return fields - comparison.modified - comparison.added - comparison.removed


def _build_last_applied(config: Mapping[str, Any]) -> str:
    """buildLastApplied: the applied object without the annotation, as Go's json.Encoder
    writes an unstructured object (sorted keys, HTML-escaped, trailing newline)."""
    obj = _copy(dict(config))
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
            if not annotations:
                del metadata["annotations"]
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text + "\n"


# --------------------------------------------------------------------------------------------
# Non-apply writes
# --------------------------------------------------------------------------------------------

# Fields present in the zero value of a kind (non-pointer structs, fields without omitempty):
# on create the apiserver compares against that zero object, so these nodes are never "added"
# and carry no "." in the creator's FieldsV1, exactly like on a real cluster.
_POD_TEMPLATE: Final = {"metadata": {"creationTimestamp": None}, "spec": {"containers": None}}
_ZERO_OBJECTS: Final[dict[str, dict[str, Any]]] = {
    "Deployment": {
        "spec": {"selector": None, "template": _POD_TEMPLATE, "strategy": {}},
        "status": {},
    },
    "ReplicaSet": {"spec": {"selector": None, "template": _POD_TEMPLATE}, "status": {}},
    "StatefulSet": {
        "spec": {
            "selector": None,
            "template": _POD_TEMPLATE,
            "serviceName": "",
            "updateStrategy": {},
        },
        "status": {"replicas": 0},
    },
    "DaemonSet": {
        "spec": {"selector": None, "template": _POD_TEMPLATE, "updateStrategy": {}},
        "status": {},
    },
    "Job": {"spec": {"template": _POD_TEMPLATE}, "status": {}},
    "CronJob": {
        "spec": {"schedule": "", "jobTemplate": {"spec": {"template": _POD_TEMPLATE}}},
        "status": {},
    },
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Service": {"spec": {}, "status": {"loadBalancer": {}}},
    "Namespace": {"spec": {}, "status": {}},
    "PersistentVolumeClaim": {"spec": {}, "status": {}},
    "Ingress": {"spec": {}, "status": {"loadBalancer": {}}},
    "NetworkPolicy": {"spec": {"podSelector": {}}},
    "Role": {"rules": None},
    "ClusterRole": {"rules": None},
    "RoleBinding": {"roleRef": {"apiGroup": "", "kind": "", "name": ""}},
    "ClusterRoleBinding": {"roleRef": {"apiGroup": "", "kind": "", "name": ""}},
    "HorizontalPodAutoscaler": {
        "spec": {"scaleTargetRef": {"kind": "", "name": ""}, "maxReplicas": 0},
        "status": {"currentReplicas": 0, "desiredReplicas": 0},
    },
    "PodDisruptionBudget": {"spec": {}, "status": {}},
    "CustomResourceDefinition": {
        "spec": {"group": "", "names": {"plural": "", "kind": ""}, "scope": "", "versions": None},
        "status": {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": None},
    },
}


def _zero_object(new: Mapping[str, Any], schema: _Schema) -> dict[str, Any]:
    zero: dict[str, Any] = {"metadata": {"creationTimestamp": None}}
    if schema.builtin:
        zero.update(_ZERO_OBJECTS.get(str(new.get("kind") or ""), {}))
    return zero


def track_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    now: str,
    subresource: str | None = None,
    list_types: Mapping[str, ListType] | None = None,
    scope: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Record a non-apply write (create, update, patch) of ``new`` by ``manager``.

    Returns a copy of ``new`` whose managedFields say: the manager (operation Update) owns what
    it changed or added, other managers lose those fields, removed fields leave every manager.
    With ``subresource="status"`` only ``.status`` is tracked and the entry carries it.
    ``managedFields`` in ``new`` are ignored. ``scope`` (field names, e.g.
    ``("metadata", "annotations")``) is the caller's word that nothing outside that field
    changed: only it is compared (the result is the same, for less work).
    """
    if not isinstance(new, dict):
        raise PatchError("object must be an object")
    schema = _schema_for(new, list_types)
    api_version = str(new.get("apiVersion") or (old or {}).get("apiVersion") or "")
    sub = subresource or ""
    new_obj = _without_managed_fields(new)
    entries = _decode_entries(old)
    if old is not None and not entries:
        # ProbabilisticSkipNonAppliedManager: an existing object nobody tracks stays untracked
        # until its first apply.
        return _copy(new_obj)  # type: ignore[no-any-return]
    base = _without_managed_fields(old) if old is not None else _zero_object(new_obj, schema)
    if sub == "status":
        # The status subresource resets everything but .status; only that is tracked (and
        # compared: the comparison of the root map's "status" member alone).
        scope = ("status",)
    comparison = _compare_within(base, new_obj, schema, scope)
    changed = _strip_ignored(comparison.added | comparison.modified)
    removed = comparison.removed

    for entry in entries:
        entry.fields = entry.fields - changed - removed
    if changed:
        mine = next((e for e in entries if e.same_owner(manager, "Update", api_version, sub)), None)
        if mine is None:
            entries.append(_Entry(manager, "Update", api_version, now, sub, set(changed)))
        else:
            mine.fields |= changed
            mine.time = now
    entries = _cap_update_managers([entry for entry in entries if entry.fields])
    result: dict[str, Any] = _copy(new_obj)
    _set_managed_fields(result, entries)
    return result


MAX_UPDATE_MANAGERS: Final = 10
ANCIENT_CHANGES: Final = "ancient-changes"


def _cap_update_managers(entries: list[_Entry]) -> list[_Entry]:
    """capManagersManager: beyond ten Update entries, the oldest ones of each apiVersion are
    merged into one "ancient-changes" entry per apiVersion."""
    updaters = [entry for entry in entries if entry.operation != "Apply"]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return entries
    updaters.sort(
        key=lambda e: (
            e.time or "",
            _identifier(e.manager, e.operation, e.api_version, e.subresource),
        )
    )
    first_of_version: dict[str, _Entry] = {}
    buckets: dict[str, _Entry] = {
        e.api_version: e for e in updaters if e.manager == ANCIENT_CHANGES and not e.subresource
    }
    dropped: set[int] = set()
    length = len(updaters)
    for entry in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        version = entry.api_version
        first = first_of_version.get(version)
        if first is None:
            first_of_version[version] = entry
            continue
        bucket = buckets.get(version)
        if bucket is None:
            # The first entry of this version becomes the bucket.
            first.manager, first.subresource = ANCIENT_CHANGES, ""
            bucket = buckets[version] = first
        bucket.fields = bucket.fields | entry.fields
        bucket.time = entry.time
        dropped.add(id(entry))
        length -= 1
    return [entry for entry in entries if id(entry) not in dropped]


# --------------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------------
# A port of k8s.io/apimachinery/pkg/util/strategicpatch's server side (StrategicMergeMapPatch):
# mergeMap, mergePatchIntoOriginal ($setElementOrder), applyRetainKeysDirective, mergeSlice with
# its special elements and normalizeElementOrder / mergeSortedSlice, which decide where patched
# and new items land (patch order first, server-only items interleaved by their live position).

_NO_KEY: Final = ""


def _smp_list_strategy(names: tuple[str, ...]) -> str | None:
    """The merge key of a list with patchStrategy merge ("" for lists of scalars such as
    finalizers), or None for the default replace strategy."""
    last = names[-1]
    if last == "ports":
        if any(name in _CONTAINER_LISTS for name in names):
            return "containerPort"
        if names == ("spec", "ports"):
            return "port"
        return None
    if last == "ownerReferences" and names != ("metadata", "ownerReferences"):
        return None
    if names == ("metadata", "finalizers"):
        return _NO_KEY
    return _SMP_KEYS.get(last)


def _go_value(value: JSON) -> str:
    """A JSON value printed the way Go's %v prints the decoded interface{} (for messages)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _no_merge_key(item: JSON, key: str) -> PatchError:
    return PatchError(f"map: {_go_value(item)} does not contain declared merge key: {key}")


def _strip_directives(value: JSON) -> JSON:
    """A patch value taken as-is (nothing to merge it with), minus patch directives."""
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic merge patch (built-in types; merge keys from the Go struct tags)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    original = _copy(target) if isinstance(target, dict) else {}
    result = _smp_map(original, _copy(patch), ())
    return result if isinstance(result, dict) else {}


def _smp_map(original: dict[str, Any], patch: dict[str, Any], names: tuple[str, ...]) -> Any:
    """mergeMap: ``original`` and ``patch`` are private copies and are consumed."""
    if "$patch" in patch:
        directive = patch.pop("$patch")
        if directive == "replace":
            return _strip_directives(patch)
        if directive == "delete":
            return {}
        raise PatchError(
            f"unknown patch type: {_go_value(directive)} in map: "
            f"{_go_value({'$patch': directive, **patch})}"
        )
    _smp_retain_keys(original, patch)
    _smp_set_element_order(original, patch, names)
    for key, value in patch.items():
        is_delete_list = False
        if key.startswith("$deleteFromPrimitiveList/"):
            key = key.partition("/")[2]
            is_delete_list = True
        elif key.startswith("$"):
            raise PatchError(f"unknown patch directive: {key}")
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            original[key] = _strip_directives(value)
            continue
        current = original[key]
        child_names = (*names, key)
        if isinstance(current, dict) and isinstance(value, dict):
            original[key] = _smp_map(current, value, child_names)
        elif isinstance(current, list) and isinstance(value, list):
            merge_key = _smp_list_strategy(child_names)
            if merge_key is None:
                original[key] = _strip_directives(value)
            else:
                original[key] = _smp_slice(current, value, merge_key, is_delete_list, child_names)
        else:
            original[key] = _strip_directives(value)
    return original


def _smp_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """applyRetainKeysDirective: clear the keys of ``original`` that the directive omits."""
    if "$retainKeys" not in patch:
        return
    retain = patch.pop("$retainKeys")
    if not isinstance(retain, list):
        raise PatchError("invalid patch format of retainKeys")
    allowed = {item for item in retain if isinstance(item, str)}
    for key, value in patch.items():
        if value is None or key.startswith(("$deleteFromPrimitiveList/", "$setElementOrder/")):
            continue
        if key not in allowed:
            raise PatchError("invalid patch format of retainKeys")
    for key in list(original):
        if key not in allowed:
            del original[key]


def _smp_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], names: tuple[str, ...]
) -> None:
    """mergePatchIntoOriginal: merge each list that has a $setElementOrder and order it."""
    for directive in [key for key in patch if key.startswith("$setElementOrder/")]:
        order = patch.pop(directive)
        if not isinstance(order, list):
            raise PatchError("invalid patch format of setElementOrder list")
        key = directive.partition("/")[2]
        merge_key = _smp_list_strategy((*names, key))
        found_original, found_patch = key in original, key in patch
        original_list = original.get(key) if found_original else []
        patch_list = patch.get(key) if found_patch else []
        if not isinstance(original_list, list) or not isinstance(patch_list, list):
            raise PatchError(f"invalid type for {key}: expected a list")
        if merge_key is None:
            continue  # a replace list: the order directive has nothing to reorder
        _smp_validate_order(patch_list, order, merge_key)
        if found_original and found_patch:
            merged = _smp_slice(original_list, patch_list, merge_key, False, (*names, key))
        elif found_patch:
            merged = _strip_directives(patch_list)
        elif found_original:
            merged = original_list
        else:
            return  # as upstream: nothing to order, and the remaining directives are skipped
        listed, server_only = _smp_partition(merged, order, merge_key)
        original[key] = _smp_normalize_order(listed, server_only, order, original_list, merge_key)
        patch.pop(key, None)


def _smp_validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """validatePatchWithSetOrderList: the patch items must appear in the order list, in order."""
    if not patch_list or not order:
        return
    items = [item for item in patch_list if not (isinstance(item, dict) and "$patch" in item)]
    patch_index, order_index = 0, 0
    while patch_index < len(items) and order_index < len(order):
        if _smp_same_key(items[patch_index], order[order_index], merge_key):
            patch_index += 1
        order_index += 1
    if patch_index < len(items):
        raise PatchError(
            f"The order in patch list:\n{_go_value(patch_list)}\n doesn't match "
            f"$setElementOrder list:\n{_go_value(order)}\n"
        )


def _smp_key_of(item: JSON, merge_key: str) -> JSON:
    if not merge_key:
        return item
    if not isinstance(item, dict):
        raise PatchError(f"invalid type for a list item: {_go_value(item)}, expected a map")
    if merge_key not in item:
        raise _no_merge_key(item, merge_key)
    return item[merge_key]


def _smp_same_key(left: JSON, right: JSON, merge_key: str) -> bool:
    return _equal(_smp_key_of(left, merge_key), _smp_key_of(right, merge_key))


def _smp_index(items: list[Any], item: JSON, merge_key: str) -> int:
    wanted = item.get(merge_key) if merge_key and isinstance(item, dict) else item
    for index, candidate in enumerate(items):
        value = candidate.get(merge_key) if merge_key and isinstance(candidate, dict) else candidate
        if _equal(value, wanted):
            return index
    return -1


def _smp_partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    listed: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key:
            _smp_key_of(item, merge_key)
        (listed if _smp_index(by, item, merge_key) >= 0 else server_only).append(item)
    return listed, server_only


def _smp_sort_by(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    """normalizeSliceOrder: stable sort by position in ``order``; deletions go last."""
    to_delete: list[Any] = []
    if merge_key:
        for item in [*items, *order]:
            _smp_key_of(item, merge_key)
        to_delete = [i for i in items if isinstance(i, dict) and i.get("$patch") == "delete"]
        items = [i for i in items if not (isinstance(i, dict) and i.get("$patch") == "delete")]
    positions = [_smp_index(order, item, merge_key) for item in items]
    if all(position >= 0 for position in positions):
        ranked = sorted(range(len(items)), key=lambda i: positions[i])
        items = [items[i] for i in ranked]
    return items + to_delete


def _smp_normalize_order(
    listed: list[Any],
    server_only: list[Any],
    order: list[Any],
    server_order: list[Any],
    merge_key: str,
) -> list[Any]:
    """normalizeElementOrder + mergeSortedSlice: patch items in patch order, server-only items
    in live order, a server-only item going first only when it was before the patch item."""
    right = _smp_sort_by(listed, order, merge_key)
    left = _smp_sort_by(server_only, server_order, merge_key)
    out: list[Any] = []
    i, j = 0, 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            left_at = _smp_index(server_order, left[i], merge_key)
            right_at = _smp_index(server_order, right[j], merge_key)
            if left_at >= 0 and right_at >= 0 and left_at < right_at:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _smp_slice(
    original: list[Any],
    patch: list[Any],
    merge_key: str,
    is_delete_list: bool,
    names: tuple[str, ...],
) -> list[Any]:
    """mergeSlice for a list with patchStrategy merge."""
    if not original and not patch:
        return original
    kinds = {_go_kind(item) for item in [*original, *patch]}
    if "list" in kinds:
        raise PatchError("lists of lists are not supported")
    if len(kinds) > 1:
        raise PatchError(
            f"list element types are not identical: [{_go_value(original)} {_go_value(patch)}]"
        )
    if kinds != {"map"}:
        if is_delete_list:
            return [item for item in original if not any(_equal(item, d) for d in patch)]
        merged = _dedup_scalars([*original, *patch])
    else:
        if not merge_key:
            raise PatchError("cannot merge lists without merge key for type map")
        original, patch = _smp_special_elements(original, patch, merge_key)
        merged = list(original)
        for item in patch:
            key_value = _smp_key_of(item, merge_key)
            index = next(
                (
                    i
                    for i, existing in enumerate(merged)
                    if isinstance(existing, dict)
                    and merge_key in existing
                    and _equal(existing[merge_key], key_value)
                ),
                None,
            )
            if index is None:
                merged.append(_strip_directives(item))
            else:
                merged[index] = _smp_map(merged[index], item, names)
    listed, server_only = _smp_partition(merged, patch, merge_key)
    return _smp_normalize_order(listed, server_only, patch, original, merge_key)


def _go_kind(value: JSON) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _dedup_scalars(items: list[Any]) -> list[Any]:
    """deduplicateScalars, including its habit of moving the last item into a duplicate's slot."""
    length = len(items) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _equal(items[i], items[j]):
                items[j] = items[length]
                items = items[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return items


def _smp_special_elements(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """mergeSliceWithSpecialElements: apply ``$patch: delete`` items, honour ``replace``."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if not isinstance(item, dict) or "$patch" not in item:
            plain.append(item)
            continue
        directive = item["$patch"]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [
                existing
                for existing in original
                if not (
                    isinstance(existing, dict)
                    and merge_key in existing
                    and _equal(existing[merge_key], item[merge_key])
                )
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(
                f"unknown patch type: {_go_value(directive)} in map: {_go_value(item)}"
            )
    if replace:
        return [_strip_directives(item) for item in plain], []
    return original, plain


# --------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)
# --------------------------------------------------------------------------------------------


def json_merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386 MergePatch(target, patch)."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result: dict[str, Any] = _copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)
# --------------------------------------------------------------------------------------------


def _pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchError(f"invalid JSON pointer: {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'JSON pointer must be empty or start with a "/": {pointer}')
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _index(token: str, length: int, *, allow_end: bool, pointer: str) -> int:
    if token == "-" and allow_end:
        return length
    if not token.isdigit() or (token != "0" and token.startswith("0")) or not token.isascii():
        raise PatchError(f"invalid array index {token!r} in {pointer}")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"array index out of bounds: {pointer}")
    return index


def _resolve_parent(doc: JSON, parts: list[str], pointer: str, op: str) -> JSON:
    node = doc
    for depth, token in enumerate(parts[:-1]):
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(
                    f'{op} operation does not apply: doc is missing path: "{pointer}": missing value'
                )
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), allow_end=False, pointer=pointer)]
        else:
            raise PatchError(
                f'{op} operation does not apply: doc is missing path: "{pointer}": '
                f"cannot traverse {'/'.join(parts[: depth + 1])}"
            )
    return node


def _get(doc: JSON, pointer: str, op: str) -> JSON:
    parts = _pointer(pointer)
    if not parts:
        return doc
    parent = _resolve_parent(doc, parts, pointer, op)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"{op} operation does not apply: doc is missing key: {pointer}")
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(token, len(parent), allow_end=False, pointer=pointer)]
    raise PatchError(f"{op} operation does not apply: doc is missing path: {pointer}")


def _add(doc: JSON, pointer: str, value: JSON, op: str = "add") -> JSON:
    parts = _pointer(pointer)
    if not parts:
        return value
    parent = _resolve_parent(doc, parts, pointer, op)
    token = parts[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(token, len(parent), allow_end=True, pointer=pointer), value)
    else:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{pointer}"')
    return doc


def _remove(doc: JSON, pointer: str, op: str = "remove") -> tuple[JSON, JSON]:
    parts = _pointer(pointer)
    if not parts:
        raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
    parent = _resolve_parent(doc, parts, pointer, op)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {token}: missing value")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(token, len(parent), allow_end=False, pointer=pointer))
    raise PatchError(f'{op} operation does not apply: doc is missing path: "{pointer}"')


def _replace(doc: JSON, pointer: str, value: JSON) -> JSON:
    parts = _pointer(pointer)
    if not parts:
        return value
    parent = _resolve_parent(doc, parts, pointer, "replace")
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(
                f"replace operation does not apply: doc is missing key: {pointer}: missing value"
            )
        parent[token] = value
    elif isinstance(parent, list):
        parent[_index(token, len(parent), allow_end=False, pointer=pointer)] = value
    else:
        raise PatchError(f'replace operation does not apply: doc is missing path: "{pointer}"')
    return doc


def _operand(op: Mapping[str, Any], name: str, kind: str) -> Any:
    if name not in op:
        raise PatchError(f'{kind} operation missing "{name}" member: {_dumps(dict(op))}')
    return op[name]


_JsonPatchStep = Callable[[JSON, Mapping[str, Any]], JSON]


def _step_add(doc: JSON, op: Mapping[str, Any]) -> JSON:
    return _add(doc, _operand(op, "path", "add"), _copy(_operand(op, "value", "add")))


def _step_remove(doc: JSON, op: Mapping[str, Any]) -> JSON:
    return _remove(doc, _operand(op, "path", "remove"))[0]


def _step_replace(doc: JSON, op: Mapping[str, Any]) -> JSON:
    return _replace(doc, _operand(op, "path", "replace"), _copy(_operand(op, "value", "replace")))


def _step_move(doc: JSON, op: Mapping[str, Any]) -> JSON:
    source = _operand(op, "from", "move")
    target = _operand(op, "path", "move")
    if isinstance(target, str) and isinstance(source, str) and target.startswith(source + "/"):
        raise PatchError(f"move operation does not apply: {source} is a prefix of {target}")
    if source == target:
        _get(doc, source, "move")
        return doc
    doc, value = _remove(doc, source, "move")
    return _add(doc, target, value, "move")


def _step_copy(doc: JSON, op: Mapping[str, Any]) -> JSON:
    value = _get(doc, _operand(op, "from", "copy"), "copy")
    return _add(doc, _operand(op, "path", "copy"), _copy(value), "copy")


def _step_test(doc: JSON, op: Mapping[str, Any]) -> JSON:
    pointer = _operand(op, "path", "test")
    expected = _operand(op, "value", "test")
    try:
        actual = _get(doc, pointer, "test")
    except PatchError as error:
        raise PatchError(f"testing value {pointer} failed: {error}") from None
    if not _equal(actual, expected):
        raise PatchError(f"testing value {pointer} failed: test failed")
    return doc


_JSON_PATCH_STEPS: Final[dict[str, _JsonPatchStep]] = {
    "add": _step_add,
    "remove": _step_remove,
    "replace": _step_replace,
    "move": _step_move,
    "copy": _step_copy,
    "test": _step_test,
}


def json_patch(target: JSON, ops: list[dict[str, Any]]) -> JSON:
    """RFC 6902: apply ``ops`` in order to a copy of ``target``; any failure aborts the patch."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = _copy(target)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError(f"invalid JSON patch operation: {_dumps(op)}")
        kind = op.get("op")
        step = _JSON_PATCH_STEPS.get(kind) if isinstance(kind, str) else None
        if step is None:
            raise PatchError(f"Unexpected kind: {kind}")
        doc = step(doc, op)
    return doc
