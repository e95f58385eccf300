"""CustomResourceDefinition support: Established status, the checks a CRD's schemas must pass, and
the structural-schema handling of custom resources (defaulting, pruning, validation).

Held to the Kubernetes documentation of CRDs ("Specifying a structural schema", "Field pruning",
"Defaulting", "Validation") and to the apiextensions-apiserver's behaviour:

- The resource root's ``apiVersion``, ``kind`` and ``metadata`` are never pruned or defaulted from
  the schema: a ``metadata: {type: object}`` (what controller-gen writes) leaves the object's
  metadata as it is. A CRD whose root ``metadata`` schema says anything but ``type: object`` and
  restrictions on ``name``/``generateName`` is refused, as on a real server; those restrictions
  are then checked on each custom resource.
- ``x-kubernetes-embedded-resource: true``: the embedded object keeps its ``apiVersion``, ``kind``
  and ``metadata`` whatever its ``properties`` say, and needs ``apiVersion`` and ``kind``.
- ``x-kubernetes-preserve-unknown-fields: true``: unknown fields at that level are kept; the
  declared properties below it are still pruned and defaulted by their own schemas.
- ``x-kubernetes-int-or-string: true``: an integer or a string.
- ``default``: fills a missing property, or a null one whose schema is not ``nullable``, at any
  depth (inside arrays of objects and ``additionalProperties`` values too), and a filled-in default
  is defaulted further by its own schema; defaults apply on writes with the request version's schema.
- ``nullable``: a null where the schema is not nullable is dropped (or defaulted) before
  validation; inside arrays it is refused.
- Several served versions with one ``storage`` version: each version is served with its own
  schema and printer columns; the conversion strategy is ``None`` (versions differ in apiVersion
  only, as the real ``None`` converter does).

Not enforced (a real server does): CEL rules (``x-kubernetes-validations``), ``format``,
``multipleOf``, ``uniqueItems``, ``oneOf``/``anyOf``/``allOf``/``not`` and conversion webhooks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import FieldError, forbidden, go_repr, invalid, not_supported, required
from .resources import ResourceType

Obj = dict[str, Any]

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
# Fields of a resource root (and of an embedded resource) that its schema does not govern.
_TYPE_AND_OBJECT_META = ("apiVersion", "kind", "metadata")
MSG_ROOT_METADATA = "must not specify anything other than name and generateName, but metadata is implicitly specified"


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


# ---------------------------------------------------------------------------- the CRD's own schemas
def schema_errors(versions: list[Any]) -> list[FieldError]:
    """What the apiserver refuses in a CRD's ``openAPIV3Schema``s: the root must be an object,
    every declared property and array item needs a type (a structural schema), and the root's
    ``metadata`` may only restrict ``name`` and ``generateName``."""
    errs: list[FieldError] = []
    for i, version in enumerate(versions):
        if not isinstance(version, dict):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            continue
        path = f"spec.versions[{i}].schema.openAPIV3Schema"
        root_type = schema.get("type")
        if not root_type:
            errs.append(required(f"{path}.type", "must not be empty at the root"))
        elif root_type != "object":
            errs.append(invalid(f"{path}.type", root_type, "must be object at the root"))
        metadata = (schema.get("properties") or {}).get("metadata")
        if isinstance(metadata, dict):
            errs.extend(_root_metadata_errors(metadata, f"{path}.properties[metadata]"))
        _structural_errors(schema, path, errs)
    return errs


def _root_metadata_errors(schema: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if schema.get("type") not in (None, "object"):
        errs.append(invalid(f"{path}.type", schema["type"], "must be object"))
    names = set(schema.get("properties") or {})
    others = set(schema) - {"type", "properties"}
    if others or not names <= {"name", "generateName"}:
        errs.append(forbidden(path, MSG_ROOT_METADATA))
    return errs


def _structural_errors(schema: Obj, path: str, errs: list[FieldError]) -> None:
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict):
            child = f"{path}.properties[{name}]"
            if not _has_type(prop):
                errs.append(
                    required(f"{child}.type", "must not be empty for specified object fields")
                )
            _structural_errors(prop, child, errs)
    items = schema.get("items")
    if isinstance(items, dict):
        if not _has_type(items):
            errs.append(
                required(f"{path}.items.type", "must not be empty for specified array items")
            )
        _structural_errors(items, f"{path}.items", errs)
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        _structural_errors(addl, f"{path}.additionalProperties", errs)
    if (
        schema.get("x-kubernetes-embedded-resource")
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and not schema.get("properties")
    ):
        errs.append(
            required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )


def _has_type(schema: Obj) -> bool:
    return bool(
        schema.get("type")
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )


# ---------------------------------------------------------------------------- defaulting and pruning
def _clone(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _is_resource(schema: Obj, root: bool) -> bool:
    """Whether apiVersion, kind and metadata at this level belong to an object's TypeMeta and
    ObjectMeta (the resource root, or an embedded resource) rather than to the schema."""
    return root or bool(schema.get("x-kubernetes-embedded-resource"))


def _settle(container: Obj, key: str, schema: Obj) -> None:
    """Fill a missing (or non-nullable null) value with the schema's default; drop other
    non-nullable nulls."""
    if key in container:
        if container[key] is not None or schema.get("nullable"):
            return
        if "default" not in schema:
            del container[key]
            return
    if "default" in schema:
        container[key] = _clone(schema["default"])


def _default_and_prune(value: Any, schema: Obj, *, root: bool = False) -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        resource = _is_resource(schema, root)
        for key, prop in props.items():
            if isinstance(prop, dict) and not (resource and key in _TYPE_AND_OBJECT_META):
                _settle(value, key, prop)
        for key in list(value):
            if resource and key in _TYPE_AND_OBJECT_META:
                continue
            if key in props and isinstance(props[key], dict):
                _default_and_prune(value[key], props[key])
            elif isinstance(addl, dict):
                _settle(value, key, addl)
                if key in value:
                    _default_and_prune(value[key], addl)
            elif not (addl is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                _default_and_prune(item, items)


def prune_and_default(rt: ResourceType, obj: Obj) -> None:
    """Apply the version's schema defaults and drop the fields it does not declare, in place."""
    if rt.schema is not None:
        _default_and_prune(obj, rt.schema, root=True)


# ---------------------------------------------------------------------------- validation
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}
_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
}


def _type_ok(value: Any, t: str) -> bool:
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES.get(t, (object,)))


def _type_invalid(path: str, value: Any, why: str) -> FieldError:
    return FieldError("FieldValueTypeInvalid", path, f"Invalid value: {go_repr(value)}: {why}")


def _check(
    value: Any, schema: Obj, path: str, errs: list[FieldError], *, root: bool = False
) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errs.append(
                _type_invalid(
                    path, None, f'{path} in body must be of type {schema["type"]}: "null"'
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            errs.append(_type_invalid(path, value, f"{path} in body must be of type int-or-string"))
        return
    t = schema.get("type")
    if t and not _type_ok(value, t):
        got = _JSON_TYPE_NAMES.get(type(value), "unknown")
        errs.append(_type_invalid(path, value, f'{path} in body must be of type {t}: "{got}"'))
        return
    _check_value(value, schema, path, errs)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _check(v, items, f"{path}[{i}]", errs)
    if isinstance(value, dict):
        _check_object(value, schema, path, errs, root=root)


def _check_value(value: Any, schema: Obj, path: str, errs: list[FieldError]) -> None:
    """enum, minimum/maximum, minLength/maxLength/pattern, minItems/maxItems."""
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


def _check_object(
    value: Obj, schema: Obj, path: str, errs: list[FieldError], *, root: bool
) -> None:
    props = schema.get("properties") or {}
    resource = _is_resource(schema, root)
    for req in schema.get("required") or ():
        if req not in value:
            errs.append(required(f"{path}.{req}" if path else req))
    if resource and not root and value:
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                errs.append(required(f"{path}.{key}", "must not be empty"))
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else key
        if resource and key in _TYPE_AND_OBJECT_META:
            if root and key == "metadata" and isinstance(child, dict):
                _check_metadata_names(child, props.get("metadata"), errs)
            continue
        if key in props and isinstance(props[key], dict):
            _check(child, props[key], child_path, errs)
        elif isinstance(schema.get("additionalProperties"), dict):
            _check(child, schema["additionalProperties"], f"{path}[{key}]", errs)


def _check_metadata_names(meta: Obj, schema: Any, errs: list[FieldError]) -> None:
    """The only metadata rules a CRD may add: restrictions on name and generateName."""
    props = (schema or {}).get("properties") or {} if isinstance(schema, dict) else {}
    for key in ("name", "generateName"):
        if isinstance(props.get(key), dict) and isinstance(meta.get(key), str):
            _check_value(meta[key], props[key], f"metadata.{key}", errs)


def validate_against_schema(rt: ResourceType, obj: Obj) -> list[FieldError]:
    """Every way ``obj`` breaks its version's schema (after defaulting and pruning)."""
    if rt.schema is None:
        return []
    errs: list[FieldError] = []
    _check(obj, rt.schema, "", errs, root=True)
    return errs
