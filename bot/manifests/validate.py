"""Checks every rendered object before anyone diffs or applies it.

Per object: ``apiVersion``, ``kind`` and ``metadata.name`` present and strings; the name valid
for its kind (RFC 1123 subdomain for most kinds, RFC 1123 label for Namespace, RFC 1035 label
for Service, path segment for RBAC kinds, ``<plural>.<group>`` for CRDs); the namespace filled
in or removed according to the kind's scope (see :mod:`bot.manifests.scopes`); the same object
(group, kind, namespace, name) declared twice is an error naming both places; a Secret's ``data``
and a ConfigMap's ``binaryData`` hold base64 (as the API server demands: its error names the
key, never the value). Optionally each
object is validated against the Kubernetes OpenAPI schema of :data:`KUBE_VERSION` with the
``kubernetes-validate`` package (strict: unknown fields are errors, as ``kubectl apply`` does).

Errors are collected per object; a bad object never stops the others.

Process-wide state: two bounded ``lru_cache`` s of schema validation, kept for the life of the
process and shared by every job in it — the jsonschema validators built from
kubernetes-validate's own schema files (at most 512, keyed by kind, apiVersion and Kubernetes
version; None for a kind the package has no schema for) and its definitions files (at most 4).
They hold no repository values: a key is only the name of a kind and its API version, and
nothing of an object (no name, no field, no Secret value) is cached or kept after validating it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Sequence
from typing import Any

from bot.diff import REDACTED
from bot.manifests.scopes import crd_scopes, group_of, is_cluster_scoped
from bot.model import Manifest, Obj, ObjectError, ObjectRef, Source

KUBE_VERSION = "1.37"
"""The Kubernetes version schema validation uses (the newest kubernetes-validate ships)."""

DEFAULT_NAMESPACE = "default"
"""The namespace of namespaced objects when neither the object nor the app names one."""

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

_RBAC = "rbac.authorization.k8s.io"
_PATH_SEGMENT_KINDS = frozenset(
    {(_RBAC, "Role"), (_RBAC, "ClusterRole"), (_RBAC, "RoleBinding"), (_RBAC, "ClusterRoleBinding")}
)

MSG_MISSING = "{field} is missing or not a string"
MSG_METADATA = "metadata is missing or not a mapping"
MSG_DUPLICATE = "{ref} is declared twice: first in {first}, again in {second}"
MSG_BASE64 = (
    "{keys} {verb} not valid base64 (the API server refuses the {kind}); encode the value with "
    "base64, or write it as plain text under {plain}"
)
MSG_BASE64_SHAPE = "{kind} {field} must be a mapping of keys to base64-encoded values"
# Where plain text goes instead of base64, per (kind, field).
_BASE64_FIELDS = {("Secret", "data"): "stringData", ("ConfigMap", "binaryData"): "data"}
MSG_SCHEMA = "schema (Kubernetes {version}): {problems}"
MAX_SCHEMA_PROBLEMS = 3


def _where(source: Source) -> str:
    line = f":{source.line}" if source.line else ""
    return f"{source.file}{line} (document {source.document})"


def name_problem(group: str, kind: str, name: str, obj: Obj | None = None) -> str | None:
    """Why ``name`` is not a valid name for (group, kind), or None when it is."""
    if (group, kind) in _PATH_SEGMENT_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            return f"invalid name {name!r}: may not be '.' or '..' or contain '/' or '%'"
        return None
    if group == "" and kind == "Service":
        if len(name) > 63 or not _LABEL_1035.match(name):
            return (
                f"invalid name {name!r}: a Service name must be an RFC 1035 label (at most 63 "
                "lower-case letters, digits or '-', starting with a letter, ending alphanumeric)"
            )
        return None
    if group == "" and kind == "Namespace":
        if len(name) > 63 or not _LABEL_1123.match(name):
            return (
                f"invalid name {name!r}: a Namespace name must be an RFC 1123 label (at most 63 "
                "lower-case letters, digits or '-', starting and ending alphanumeric)"
            )
        return None
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return (
            f"invalid name {name!r}: must be an RFC 1123 subdomain (at most 253 lower-case "
            "letters, digits, '-' or '.', starting and ending alphanumeric)"
        )
    if group == "apiextensions.k8s.io" and kind == "CustomResourceDefinition" and obj:
        spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
        names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if name != expected:
            return f"invalid name {name!r}: a CustomResourceDefinition must be named {expected!r} (<plural>.<group>)"
    return None


def _namespace_problem(namespace: Any) -> str | None:
    if not isinstance(namespace, str) or len(namespace) > 63 or not _LABEL_1123.match(namespace):
        return f"invalid metadata.namespace {namespace!r}: must be an RFC 1123 label"
    return None


def validate_objects(
    *,
    app: str,
    items: Sequence[tuple[Obj, Source]],
    namespace: str | None,
    schema: bool = False,
    kube_version: str = KUBE_VERSION,
) -> tuple[list[Manifest], list[ObjectError]]:
    """Turn parsed objects into :class:`Manifest` s, collecting an error per bad object.

    Namespaced objects without ``metadata.namespace`` get ``namespace`` (or ``"default"`` when
    the app has none); cluster-scoped objects lose any namespace. Objects are not mutated: the
    ones that change are shallow-copied (YAML aliases may share sub-objects)."""
    errors: list[ObjectError] = []
    valid: list[tuple[Obj, Source]] = []
    for obj, source in items:
        problem = _shape_problem(obj)
        if problem:
            errors.append(
                ObjectError(
                    problem,
                    ref=ObjectRef.of(obj) if isinstance(obj.get("metadata"), dict) else None,
                    file=source.file,
                    line=source.line,
                    reason="Invalid",
                )
            )
        else:
            valid.append((obj, source))

    crds = crd_scopes(obj for obj, _ in valid)
    default_ns = namespace or DEFAULT_NAMESPACE
    seen: dict[tuple[str, str, str, str], Source] = {}
    manifests: list[Manifest] = []
    good_namespaces: set[str] = set()  # an app's objects share a few namespaces: check each once
    for obj, source in valid:
        api_version: str = obj["apiVersion"]
        kind: str = obj["kind"]
        meta: dict[str, Any] = obj["metadata"]
        name: str = meta["name"]
        group = group_of(api_version)
        if is_cluster_scoped(group, kind, crds):
            if "namespace" in meta:
                meta = {k: v for k, v in meta.items() if k != "namespace"}
                obj = {**obj, "metadata": meta}
        elif not meta.get("namespace"):
            meta = {**meta, "namespace": default_ns}
            obj = {**obj, "metadata": meta}
        # ObjectRef.of(obj), without its conversions: the shape check made these strings
        ref_namespace = meta.get("namespace") or None
        ref = ObjectRef(api_version, kind, ref_namespace, name)
        problem = name_problem(group, kind, name, obj)
        if (
            problem is None
            and ref_namespace is not None
            and not (isinstance(ref_namespace, str) and ref_namespace in good_namespaces)
        ):
            problem = _namespace_problem(ref_namespace)
            if problem is None:
                good_namespaces.add(ref_namespace)
        if problem is None and schema:
            problem = schema_problem(obj, kube_version)
        if problem is None and group == "":
            problem = base64_problem(kind, obj)
        if problem:
            errors.append(
                ObjectError(problem, ref=ref, file=source.file, line=source.line, reason="Invalid")
            )
            continue
        key = (group, kind, ref_namespace or "", name)  # ref.key
        first = seen.get(key)
        if first is not None:
            errors.append(
                ObjectError(
                    MSG_DUPLICATE.format(ref=ref, first=_where(first), second=_where(source)),
                    ref=ref,
                    file=source.file,
                    line=source.line,
                    reason="Duplicate",
                )
            )
            continue
        seen[key] = source
        manifests.append(Manifest(app=app, obj=obj, source=source))
    return manifests, errors


def _is_base64(value: Any) -> bool:
    if value is None:  # null decodes to empty bytes
        return True
    if not isinstance(value, str):
        return False
    # Go's base64 decoder (the API server's) skips line breaks; anything else must be valid
    try:
        base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def base64_problem(kind: str, obj: Obj) -> str | None:
    """Why a core-group Secret's ``data`` or ConfigMap's ``binaryData`` would be refused for
    not being base64, naming the keys and never quoting a value; None when it would not."""
    for (of_kind, field), plain in _BASE64_FIELDS.items():
        if kind != of_kind or obj.get(field) is None:
            continue
        values = obj[field]
        if not isinstance(values, dict):
            return MSG_BASE64_SHAPE.format(kind=kind, field=field)
        bad = [str(key) for key, value in values.items() if not _is_base64(value)]
        if bad:
            return MSG_BASE64.format(
                kind=kind,
                field=field,
                keys=", ".join(f"{field}.{key}" for key in sorted(bad)),
                verb="is" if len(bad) == 1 else "are",
                plain=plain,
            )
    return None


def _shape_problem(obj: Obj) -> str | None:
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if not isinstance(value, str) or not value:
            return MSG_MISSING.format(field=field)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return MSG_METADATA
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        if meta.get("generateName"):
            return "metadata.name is missing: objects with only generateName cannot be applied declaratively"
        return MSG_MISSING.format(field="metadata.name")
    return None


@functools.lru_cache(maxsize=512)
def _validator(kind: str, api_version: str, version: str) -> Any:
    """A cached jsonschema validator for one kind (None when kubernetes-validate has no schema).

    ``kubernetes_validate.validate`` re-reads its 2 MB definitions file on every call; building
    the validator once per kind makes per-app validation cheap."""
    import jsonschema  # type: ignore[import-untyped]
    import referencing
    from kubernetes_validate import utils

    schema_version = [v for v in utils.all_versions() if utils.major_minor(v) <= version][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", version)
    except FileNotFoundError:
        return None
    definitions = _definitions(folder, version)
    registry: Any = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = definitions @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=4)
def _definitions(folder: str, version: str) -> Any:
    import referencing
    from kubernetes_validate import utils

    return referencing.Resource.from_contents(
        utils.schema_contents(f"{folder}/_definitions.json", version)
    )


def schema_problem(obj: Obj, version: str = KUBE_VERSION) -> str | None:
    """The first schema violation of ``obj`` (None when valid or when the kind has no schema,
    e.g. a custom resource: the API server validates those against the CRD)."""
    validator = _validator(obj["kind"], obj["apiVersion"], version)
    if validator is None:
        return None
    import jsonschema  # type: ignore[import-untyped]

    found = sorted(validator.iter_errors(obj), key=jsonschema.exceptions.relevance)
    if not found:
        return None
    problems = []
    secret = obj.get("kind") == "Secret"
    for error in found[:MAX_SCHEMA_PROBLEMS]:
        path = ".".join(str(p) for p in error.absolute_path)
        message = error.message
        if secret:
            # jsonschema quotes the offending value ("'s3cret' is not of type ..."): for a
            # Secret that value may be the secret itself, and no secret value is ever printed.
            message = message.replace(repr(error.instance), REDACTED)
        problems.append(f"{path}: {message}" if path else message)
    more = len(found) - MAX_SCHEMA_PROBLEMS
    if more > 0:
        problems.append(f"and {more} more")
    return MSG_SCHEMA.format(version=version, problems="; ".join(problems))
