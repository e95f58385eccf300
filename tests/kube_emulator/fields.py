"""Unknown-field detection for built-in kinds (server-side field validation, KEP-2885).

Walks an object against the Kubernetes 1.37 schema definitions (see openapi.py) and returns the
paths of fields the schema does not declare. The caller then follows ``?fieldValidation=``:
Strict rejects with 400, Warn (the default) drops them with a Warning header, Ignore drops them.
"""

from __future__ import annotations

import functools
from typing import Any

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
