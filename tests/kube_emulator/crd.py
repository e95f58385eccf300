"""CustomResourceDefinition support: Established status, structural-schema defaulting and pruning,
and validation of custom resources against their openAPIV3Schema.

Defaulting and pruning follow the apiextensions-apiserver rules: a ``default`` fills a missing (or
non-nullable null) property; unknown fields are dropped unless the schema has
``x-kubernetes-preserve-unknown-fields: true`` or ``additionalProperties``; apiVersion, kind and
metadata of the root (and of ``x-kubernetes-embedded-resource`` objects) are always kept.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import FieldError, invalid, not_supported, required
from .resources import ResourceType

Obj = dict[str, Any]

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving the Kubernetes version order: v2, v1, v1beta2, v1beta1, v1alpha1, then others."""
    m = _VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def established_status(crd: Obj, now: str) -> Obj:
    """The status the real CRD controllers write: NamesAccepted and Established conditions."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    old = crd.get("status") or {}
    old_conds = {c.get("type"): c for c in old.get("conditions") or ()}

    def cond(ctype: str, reason: str, message: str) -> Obj:
        prev = old_conds.get(ctype) or {}
        ts = prev.get("lastTransitionTime") if prev.get("status") == "True" else None
        return {
            "type": ctype,
            "status": "True",
            "lastTransitionTime": ts or now,
            "reason": reason,
            "message": message,
        }

    stored = list(old.get("storedVersions") or [])
    for v in spec.get("versions") or ():
        if v.get("storage") and v.get("name") not in stored:
            stored.append(v["name"])
    return {
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    }


def _clone(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _walk(value: Any, schema: Obj | None, *, root: bool = False) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for k, ps in props.items():
            if not isinstance(ps, dict):
                continue
            if k in value and value[k] is None and not ps.get("nullable"):
                del value[k]
            if k not in value and "default" in ps:
                value[k] = _clone(ps["default"])
        for k in list(value):
            if k in props:
                value[k] = _walk(value[k], props[k])
            elif embedded and k in ("apiVersion", "kind", "metadata"):
                continue
            elif isinstance(addl, dict):
                value[k] = _walk(value[k], addl)
            elif addl is True or preserve:
                continue
            else:
                del value[k]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_walk(v, items) for v in value]
    return value


def prune_and_default(rt: ResourceType, obj: Obj) -> None:
    """Apply the CRD schema's defaults and drop unknown fields, in place."""
    if rt.schema is None:
        return
    _walk(obj, rt.schema, root=True)


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def _type_ok(value: Any, t: str) -> bool:
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES.get(t, (object,)))


def _check(value: Any, schema: Obj, path: str, errs: list[FieldError]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errs.append(
                invalid(path, None, f'{path} in body must be of type {schema["type"]}: "null"')
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            errs.append(invalid(path, value, f"{path} in body must be of type int-or-string"))
        return
    t = schema.get("type")
    if t and not _type_ok(value, t):
        got = {
            dict: "object",
            list: "array",
            str: "string",
            bool: "boolean",
            int: "integer",
            float: "number",
        }.get(type(value), "unknown")
        errs.append(invalid(path, value, f'{path} in body must be of type {t}: "{got}"'))
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        errs.append(not_supported(path, value, [str(e) for e in enum]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(
                invalid(
                    path,
                    value,
                    f"{path} in body should be greater than or equal to {schema['minimum']}",
                )
            )
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(
                invalid(
                    path,
                    value,
                    f"{path} in body should be less than or equal to {schema['maximum']}",
                )
            )
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(
                invalid(
                    path,
                    value,
                    f"{path} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(
                FieldError(
                    "FieldValueTooLong",
                    path,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                )
            )
        pattern = schema.get("pattern")
        if pattern and re.search(pattern, value) is None:
            errs.append(invalid(path, value, f"{path} in body should match '{pattern}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(
                invalid(
                    path,
                    len(value),
                    f"{path} in body should have at least {schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(
                FieldError(
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _check(v, items, f"{path}[{i}]", errs)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or ():
            if req not in value:
                errs.append(required(f"{path}.{req}" if path else req))
        for k, v in value.items():
            if k in props and isinstance(props[k], dict):
                if path == "" and k == "metadata":
                    continue
                _check(v, props[k], f"{path}.{k}" if path else k, errs)
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(v, schema["additionalProperties"], f"{path}[{k}]", errs)


def validate_against_schema(rt: ResourceType, obj: Obj) -> list[FieldError]:
    if rt.schema is None:
        return []
    errs: list[FieldError] = []
    _check(obj, rt.schema, "", errs)
    return errs
