"""Unknown-field detection for built-in kinds (server-side field validation, KEP-2885).

Walks an object against the Kubernetes 1.37 schema definitions (see openapi.py) and returns the
paths of fields the schema does not declare. The caller then follows ``?fieldValidation=``:
Strict rejects with 400, Warn (the default) drops them with a Warning header, Ignore drops them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from . import merge
from .openapi import OBJECT_META, _definitions, _raw_definitions
from .resources import ResourceType

# isinstance with a tuple: ``dict | list`` builds a union object on every call (hot loops).
_CONTAINERS = (dict, list)

Obj = dict[str, Any]
_PREFIX = "#/$defs/"


@functools.cache
def _kind_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in _raw_definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            out[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name
    return out


def _resolve(schema: Obj, defs: dict[str, Obj]) -> Obj:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return defs.get(ref.rsplit("/", 1)[-1], {})
    for key in ("allOf", "anyOf"):
        alts = schema.get(key)
        if isinstance(alts, list) and len(alts) == 1 and isinstance(alts[0], dict):
            return _resolve(alts[0], defs)
    return schema


# Per schema node (long-lived: the definitions are loaded once): its resolved properties,
# additionalProperties and items, so a walk does no $ref resolution per value.
_Node = tuple[dict[str, Obj] | None, Obj | None, Obj | None]
_NODES: dict[int, tuple[Obj, _Node]] = {}


def _node(schema: Obj, defs: dict[str, Obj]) -> _Node:
    cached = _NODES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    resolved = _resolve(schema, defs)
    props = resolved.get("properties")
    addl = resolved.get("additionalProperties")
    items = resolved.get("items")
    node: _Node = (
        props if isinstance(props, dict) else None,
        addl if isinstance(addl, dict) else None,
        items if isinstance(items, dict) else None,
    )
    # the schema is kept in the entry, so its id cannot be reused while cached
    _NODES[id(schema)] = (schema, node)
    return node


def _path(parent: Any) -> str:
    """A path from the (parent, step) chain the walk builds (steps: names or [index])."""
    steps: list[str] = []
    while parent is not None:
        parent, step = parent
        steps.append(step)
    text = ""
    for step in reversed(steps):
        text += step if step.startswith("[") or not text else "." + step
    return text


def _walk(value: Any, schema: Obj, path: Any, defs: dict[str, Obj], out: list[str]) -> None:
    cached = _NODES.get(id(schema))  # _node's lookup, inlined: this runs for every value
    if cached is not None and cached[0] is schema:
        props, addl, items = cached[1]
    else:
        props, addl, items = _node(schema, defs)
    if isinstance(value, dict):
        if props is None:
            if addl is not None:
                for k, v in value.items():
                    if isinstance(v, _CONTAINERS):
                        _walk(v, addl, (path, k), defs, out)
            return  # free-form object (RawExtension, FieldsV1, ...)
        for k, v in value.items():
            if k in props:
                if isinstance(v, _CONTAINERS):
                    _walk(v, props[k], (path, k), defs, out)
            elif addl is not None:
                if isinstance(v, _CONTAINERS):
                    _walk(v, addl, (path, k), defs, out)
            else:
                out.append(_path((path, k)))
    elif isinstance(value, list) and items is not None:
        for i, v in enumerate(value):
            if isinstance(v, _CONTAINERS):
                _walk(v, items, (path, f"[{i}]"), defs, out)


def unknown_fields_ready() -> None:
    """Load the schemas ``unknown_fields`` walks (otherwise loaded by the first write)."""
    _kind_index()
    _definitions(_PREFIX)


def unknown_fields(rt: ResourceType, obj: Obj) -> list[str]:
    """Paths (``spec.replicass``, ``spec.template.spec.containers[0].foo``) not in the schema."""
    if rt.crd:
        if rt.schema is None:
            return []
        out: list[str] = []
        _walk_crd(obj, rt.schema, "", out, root=True)
        return out
    name = _kind_index().get((rt.group, rt.version, rt.kind))
    if name is None:
        return []
    defs = _definitions(_PREFIX)
    found: list[str] = []
    _walk(obj, defs[name], None, defs, found)
    return found


def _walk_crd(value: Any, schema: Obj, path: str, out: list[str], *, root: bool = False) -> None:
    if isinstance(value, dict):
        resource = root or schema.get("x-kubernetes-embedded-resource")
        if resource and isinstance(value.get("metadata"), dict):
            # the metadata of a resource is an ObjectMeta, whatever the CRD's schema says of it
            defs = _definitions(_PREFIX)
            found: list[str] = []
            _walk(value["metadata"], defs[OBJECT_META], None, defs, found)
            prefix = f"{path}.metadata" if path else "metadata"
            out.extend(f"{prefix}.{f}" for f in found)
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for k, v in value.items():
            child = f"{path}.{k}" if path else k
            if resource and k in ("apiVersion", "kind", "metadata"):
                continue
            if props and k in props:
                _walk_crd(v, props[k], child, out)
            elif isinstance(addl, dict):
                _walk_crd(v, addl, child, out)
            elif (
                preserve
                or addl is True
                or (props is None and addl is None and not schema.get("type"))
            ):
                continue
            else:
                out.append(child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            _walk_crd(v, schema["items"], f"{path}[{i}]", out)


@dataclass(frozen=True)
class WrongType:
    """A value of another JSON type than the schema's, located both ways the server names it:
    structured-merge-diff's path (``smd_path``, for applies) and Go's decoder's (``struct``,
    the innermost Go struct, and ``go_field``, the JSON names from the root without indexes)."""

    smd_path: str
    struct: str
    go_field: str
    expected: str  # "integer", "number", "string", "boolean", "object", "array", "int-or-string"
    go_type: str
    value: Any

    def apply_message(self) -> str:
        """structured-merge-diff's words (typed/validate.go)."""
        if self.expected in ("integer", "number"):
            return (
                f"{self.smd_path}: expected numeric (int or float), got {_go_type_of(self.value)}"
            )
        if self.expected in ("object", "array"):
            kind = "map" if self.expected == "object" else "list"
            return f"{self.smd_path}: expected {kind}, got &{{{_go_value(self.value)}}}"
        wanted = {"boolean": "boolean"}.get(self.expected, "string")
        return (
            f"{self.smd_path}: expected {wanted}, got "
            f"&value.valueUnstructured{{Value:{_go_value(self.value)}}}"
        )

    def decode_message(self) -> str:
        """encoding/json's words (UnmarshalTypeError)."""
        got = _json_type_of(self.value)
        return (
            f"json: cannot unmarshal {got} into Go struct field {self.struct}.{self.go_field} "
            f"of type {self.go_type}"
        )


def _go_type_of(value: Any) -> str:
    """Go's %T of a decoded JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "float64" if isinstance(value, float) else "int64"


def _go_value(value: Any) -> str:
    """Go's %#v of a decoded JSON value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_value(v) for v in value) + "}"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{_go_value(v)}" for k, v in value.items())
        return "map[string]interface {}{" + inner + "}"
    return "<nil>" if value is None else str(value)


def _json_type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "number"


_SCALARS: dict[str, tuple[type, ...]] = {
    "integer": (int, float),  # structured-merge-diff's "numeric"
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}
_LOOSE = {
    # IntOrString and Quantity (whose v3 schema is oneOf string/number) take more than one type
    "IntOrString": (int, str),
    "Quantity": (int, float, str),
}


def _go_type(schema: Obj, ref: str) -> str:
    if ref:
        package = ref.rsplit(".", 2)
        return f"{package[-2]}.{package[-1]}" if len(package) == 3 else ref
    t, fmt = schema.get("type"), schema.get("format")
    if t == "integer":
        return str(fmt) if fmt in ("int32", "int64") else "int"
    if t == "number":
        return "float64"
    if t == "boolean":
        return "bool"
    if t == "array":
        items = schema.get("items") or {}
        return "[]" + _go_type(_resolve(items, _definitions(_PREFIX)), _ref_name(items))
    if t == "object":
        return "map[string]string"
    return "string"


def _ref_name(schema: Obj) -> str:
    """The definition a property refers to (directly, or through a one-element allOf)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    alts = schema.get("allOf")
    if isinstance(alts, list) and len(alts) == 1 and isinstance(alts[0], dict):
        return _ref_name(alts[0])
    return ""


def wrong_type(rt: ResourceType, obj: Obj) -> WrongType | None:
    """The first value of ``obj`` (a built-in kind) whose JSON type its schema does not allow."""
    if rt.crd:
        return None
    name = _kind_index().get((rt.group, rt.version, rt.kind))
    if name is None:
        return None
    defs = _definitions(_PREFIX)
    found = _find_wrong(obj, defs[name], None, name.rsplit(".", 1)[-1], defs)
    if found is None:
        return None
    value, node, trail, struct = found
    smd_path, go_field = _paths(trail)
    return WrongType(smd_path, struct, go_field, node[1], node[2], value)


# Per schema node (cached like _NODES): the Python types its JSON type allows (None: anything),
# the schema's type name, the Go type name, the Go struct it is (or ""), and its children.
_TypeNode = tuple[
    tuple[type, ...] | None, str, str, str, dict[str, Obj] | None, Obj | None, Obj | None
]
_TYPE_NODES: dict[int, tuple[Obj, _TypeNode]] = {}


def _type_node(schema: Obj, defs: dict[str, Obj]) -> _TypeNode:
    cached = _TYPE_NODES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    ref = _ref_name(schema)
    short = ref.rsplit(".", 1)[-1]
    resolved = _resolve(schema, defs)
    props, addl, items = _node(schema, defs)
    t = str(resolved.get("type") or "")
    node: _TypeNode
    if short in _LOOSE:
        expected = "int-or-string" if short == "IntOrString" else "string"
        node = (_LOOSE[short], expected, _go_type({}, ref), "", None, None, None)
    else:
        struct = short if ref and t == "object" and props is not None else ""
        node = (_SCALARS.get(t), t, _go_type(resolved, ref), struct, props, addl, items)
    # the schema is kept in the entry, so its id cannot be reused while cached
    _TYPE_NODES[id(schema)] = (schema, node)
    return node


def _find_wrong(
    value: Any, schema: Obj, trail: Any, struct: str, defs: dict[str, Obj]
) -> tuple[Any, _TypeNode, Any, str] | None:
    """Depth-first: the first value of a wrong JSON type, its schema node, its trail (a chain of
    (parent trail, field name or (index, item), in a map?), turned into paths only when
    something is wrong) and the innermost Go struct holding it (what encoding/json names)."""
    if value is None:
        return None  # null is "not set" to both decoders
    node = _type_node(schema, defs)
    allowed = node[0]
    if allowed is None:
        return None  # free-form (RawExtension, JSON): anything goes
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        return value, node, trail, struct
    inner = node[3] or struct
    if isinstance(value, dict):
        props, addl = node[4], node[5]
        for key, child in value.items():
            sub = props.get(key) if props is not None else None
            in_map = sub is None
            if in_map:
                if addl is None:
                    continue  # unknown fields are the field validation's business
                sub = addl
            found = _find_wrong(child, sub, (trail, key, in_map), inner, defs)
            if found is not None:
                return found
    elif isinstance(value, list) and node[6] is not None:
        for index, item in enumerate(value):
            found = _find_wrong(item, node[6], (trail, (index, item), False), inner, defs)
            if found is not None:
                return found
    return None


def _paths(trail: Any) -> tuple[str, str]:
    """structured-merge-diff's path and encoding/json's field path of a trail."""
    steps: list[tuple[Any, bool]] = []
    while trail is not None:
        trail, step, in_map = trail
        steps.append((step, in_map))
    names: tuple[str, ...] = ()
    smd_path, go_field = "", ""
    for step, in_map in reversed(steps):
        if isinstance(step, tuple):
            index, item = step
            smd_path += merge.item_element(names, item, index)
            continue
        names = (*names, step)
        smd_path += f".{step}"
        if not in_map:  # Go names a map by its field, not by its keys
            go_field = f"{go_field}.{step}" if go_field else step
    return smd_path, go_field


def drop_fields(obj: Obj, paths: list[str]) -> None:
    """Remove the given unknown-field paths from ``obj`` in place."""
    import re

    token = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
    for path in paths:
        parts: list[str | int] = [
            m.group(1) if m.group(1) is not None else int(m.group(2)) for m in token.finditer(path)
        ]
        cur: Any = obj
        for part in parts[:-1]:
            try:
                cur = cur[part]
            except (KeyError, IndexError, TypeError):
                cur = None
                break
        last = parts[-1]
        if isinstance(cur, dict) and isinstance(last, str):
            cur.pop(last, None)
