"""OpenAPI documents (/openapi/v2 and /openapi/v3) the way kubectl reads them.

Schemas of built-in kinds come from the Kubernetes 1.37 definitions shipped in the
``kubernetes-validate`` package (converted to OpenAPI: ``$ref`` targets, single ``type``);
custom resources get their CRD's openAPIV3Schema. Every resource gets paths whose operations
carry ``x-kubernetes-group-version-kind`` and the query parameters kubectl checks for
(``fieldValidation``, ``dryRun``, ``fieldManager``, ``force``), so kubectl uses server-side field
validation as it does against a real cluster.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

from .resources import Registry, ResourceType

Obj = dict[str, Any]
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}


@functools.cache
def _raw_definitions() -> dict[str, Obj]:
    import kubernetes_validate

    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    versions = sorted(
        d for d in os.listdir(base) if d.endswith("-local") and not d.endswith("strict")
    )
    with open(os.path.join(base, versions[-1], "_definitions.json"), encoding="utf-8") as fh:
        defs: dict[str, Obj] = json.load(fh)["$defs"]
    return defs


def _convert(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out: Obj = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = prefix + v.rsplit("/", 1)[-1]
            elif k == "type" and isinstance(v, list):
                types = [t for t in v if t != "null"]
                out[k] = types[0] if types else "object"
            elif (
                k == "oneOf"
                and isinstance(v, list)
                and all(isinstance(x, dict) and set(x) == {"type"} for x in v)
            ):
                out["type"] = "string"
            elif False:
                continue
            else:
                out[k] = _convert(v, prefix)
        return out
    if isinstance(node, list):
        return [_convert(v, prefix) for v in node]
    return node


@functools.cache
def _definitions(prefix: str) -> dict[str, Obj]:
    out: dict[str, Obj] = {}
    for name, schema in _raw_definitions().items():
        out[name] = dict(_SPECIAL[name]) if name in _SPECIAL else _convert(schema, prefix)
    return out


def _refs(node: Any, acc: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            acc.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            _refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            _refs(v, acc)


def _closure(names: set[str], defs: dict[str, Obj]) -> dict[str, Obj]:
    todo, seen = list(names), set()
    while todo:
        n = todo.pop()
        if n in seen or n not in defs:
            continue
        seen.add(n)
        acc: set[str] = set()
        _refs(defs[n], acc)
        todo.extend(acc - seen)
    return {n: defs[n] for n in sorted(seen)}


def _builtin_def_name(rt: ResourceType, defs: dict[str, Obj]) -> str | None:
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            if (
                gvk.get("group") == rt.group
                and gvk.get("version") == rt.version
                and gvk.get("kind") == rt.kind
            ):
                return name
    return None


def _crd_def_name(rt: ResourceType) -> str:
    rev = ".".join(reversed(rt.group.split(".")))
    return f"{rev}.{rt.version}.{rt.kind}"


def _crd_schema(rt: ResourceType, prefix: str) -> Obj:
    schema: Obj = json.loads(
        json.dumps(rt.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    )
    props = schema.setdefault("properties", {})
    props["metadata"] = {"$ref": prefix + OBJECT_META}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "kind": rt.kind, "version": rt.version}
    ]
    schema.setdefault("type", "object")
    return schema


def _param(name: str, typ: str = "string") -> Obj:
    return {
        "name": name,
        "in": "query",
        "description": name,
        "schema": {"type": typ, "uniqueItems": True},
    }


def _param_v2(name: str, typ: str = "string") -> Obj:
    return {"name": name, "in": "query", "description": name, "type": typ, "uniqueItems": True}


def _paths(rt: ResourceType, ref: str, v3: bool) -> Obj:
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    prefix = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    )
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    p = _param if v3 else _param_v2
    write = [p("dryRun"), p("fieldManager"), p("fieldValidation")]

    def op(action: str, params: list[Obj], consumes: list[str] | None = None) -> Obj:
        o: Obj = {
            "operationId": f"{action}{rt.kind}",
            "parameters": params,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }
        if v3:
            o["responses"] = {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": ref}}},
                }
            }
            if consumes:
                o["requestBody"] = {
                    "content": {c: {"schema": {"type": "object"}} for c in consumes}
                }
        else:
            o["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
            if consumes:
                o["consumes"] = consumes
        return o

    patch_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    if not rt.crd:
        patch_types.append("application/strategic-merge-patch+json")
    item = {
        "get": op("get", []),
        "put": op("put", write, ["*/*"]),
        "patch": op("patch", [*write, p("force", "boolean")], patch_types),
        "delete": op("delete", [p("dryRun"), p("propagationPolicy")]),
    }
    coll = {
        "get": op("list", [p("labelSelector"), p("fieldSelector"), p("watch", "boolean")]),
        "post": op("post", write, ["*/*"]),
        "delete": op("deletecollection", [p("dryRun"), p("labelSelector")]),
    }
    out = {prefix: coll, f"{prefix}/{{name}}": item}
    for sub in rt.subresources:
        if sub in ("status", "scale"):
            out[f"{prefix}/{{name}}/{sub}"] = {
                "get": op("get", []),
                "put": op("put", write, ["*/*"]),
                "patch": op("patch", [*write, p("force", "boolean")], patch_types),
            }
    return out


def _gv_doc(registry: Registry, group: str, version: str, v3: bool) -> Obj | None:
    rts = registry.in_group_version(group, version)
    if not rts:
        return None
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    defs = _definitions(prefix)
    wanted: set[str] = set()
    extra: dict[str, Obj] = {}
    paths: Obj = {}
    for rt in rts:
        if rt.crd:
            name = _crd_def_name(rt)
            extra[name] = _crd_schema(rt, prefix)
            wanted.add(OBJECT_META)
        else:
            found = _builtin_def_name(rt, defs)
            if found is None:
                continue
            name = found
            wanted.add(name)
        paths.update(_paths(rt, prefix + name, v3))
    schemas = _closure(wanted, defs)
    schemas.update(extra)
    info = {"title": "Kubernetes", "version": "v1.37.0"}
    if v3:
        return {
            "openapi": "3.0.0",
            "info": info,
            "paths": paths,
            "components": {"schemas": schemas},
        }
    return {"swagger": "2.0", "info": info, "paths": paths, "definitions": schemas}


def document(registry: Registry, rest: list[str]) -> Obj | None:
    """The document for /openapi/<rest...>, or None for an unknown path."""
    if rest == ["v2"]:
        merged: Obj = {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": {},
            "definitions": {},
        }
        seen: set[tuple[str, str]] = set()
        for rt in registry.all():
            if (rt.group, rt.version) in seen:
                continue
            seen.add((rt.group, rt.version))
            doc = _gv_doc(registry, rt.group, rt.version, v3=False)
            if doc:
                merged["paths"].update(doc["paths"])
                merged["definitions"].update(doc["definitions"])
        return merged
    if rest == ["v3"]:
        paths: Obj = {}
        seen = set()
        for rt in registry.all():
            if (rt.group, rt.version) in seen:
                continue
            seen.add((rt.group, rt.version))
            key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
            digest = (
                hashlib.sha512(
                    json.dumps(
                        [
                            r.kind + repr(r.schema)
                            for r in registry.in_group_version(rt.group, rt.version)
                        ]
                    ).encode()
                )
                .hexdigest()
                .upper()
            )
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest[:128]}"}
        return {"paths": paths}
    if len(rest) >= 3 and rest[0] == "v3":
        if rest[1] == "api" and len(rest) == 3:
            return _gv_doc(registry, "", rest[2], v3=True)
        if rest[1] == "apis" and len(rest) == 4:
            return _gv_doc(registry, rest[2], rest[3], v3=True)
    return None
